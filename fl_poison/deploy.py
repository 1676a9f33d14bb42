"""Operate a secured Flower deployment: certificates, node keys, a loopback test federation.

Why here and not in shell scripts: key generation uses python ``cryptography``
(installed with flwr), so no openssl is needed, and starting / stopping
processes by the PIDs we recorded is easier to get right (and to test) in
Python. Every process is started in its own session so that stopping it by its
PID also stops the ClientApp / ServerApp processes Flower spawned under it.

Flower 1.41 facts this module relies on (checked with ``--help`` and the flwr
sources): ``flower-superlink --ssl-ca-certfile/--ssl-certfile/--ssl-keyfile
--enable-supernode-auth`` (one HTTP port, ``--port``, for Fleet, Control and
Runtime APIs); SuperNode keys are NIST-curve EC keys in OpenSSH format,
registered with ``flwr supernode register KEY.pub CONNECTION``; a SuperNode
verifies the SuperLink with ``--root-certificates`` and signs with
``--auth-supernode-private-key``; ``flwr`` reads named SuperLink connections
from ``$FLWR_HOME/config.toml`` (``[superlink.NAME] address, root-certificates``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PID_FILE = "federation.json"
CONNECTION = "fl-poison-local"


# ----------------------------------------------------------------------------- keys
def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def make_certificates(out: str | Path, num_nodes: int, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
                      days: int = 30, extra_nodes: int = 0) -> dict[str, Path]:
    """A CA, a SuperLink certificate for ``hosts`` (SAN) and ``num_nodes + extra_nodes`` SuperNode key pairs.

    Test-deployment material: the CA key stays in ``out`` and should be kept
    offline in production. Node keys are EC P-384 (Flower's register command
    accepts NIST curves only), public halves in OpenSSH format.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    nokey = serialization.NoEncryption()

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fl-poison test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    srv_key = ec.generate_private_key(ec.SECP384R1())
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now).not_valid_after(now + dt.timedelta(days=days))
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(ca_key, hashes.SHA256()))

    paths = {"ca": out / "ca.crt", "ca-key": out / "ca.key", "server-cert": out / "server.pem",
             "server-key": out / "server.key"}
    _write(paths["ca"], ca.public_bytes(pem))
    _write(paths["ca-key"], ca_key.private_bytes(pem, pkcs8, nokey), private=True)
    _write(paths["server-cert"], srv.public_bytes(pem))
    _write(paths["server-key"], srv_key.private_bytes(pem, pkcs8, nokey), private=True)
    for i in range(num_nodes + extra_nodes):
        key = ec.generate_private_key(ec.SECP384R1())
        priv = key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, nokey)
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        _write(out / f"node{i}.key", priv, private=True)
        _write(out / f"node{i}.key.pub", pub + b"\n")
        paths[f"node{i}"] = out / f"node{i}.key"
    return paths


def write_connection(flwr_home: str | Path, address: str, ca: str | Path | None, name: str = CONNECTION,
                     make_default: bool = True) -> Path:
    """Add ``[superlink.NAME]`` to ``$FLWR_HOME/config.toml`` (the entry ``flwr run . NAME`` uses).

    With ``ca=None`` the entry is ``insecure = true``: local testing only.
    Other connections in the file are kept.
    """
    import tomllib

    home = Path(flwr_home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    doc = tomllib.loads(path.read_text()) if path.exists() else {}
    links = doc.setdefault("superlink", {})
    entry: dict[str, object] = {"address": address}
    if ca is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(Path(ca).resolve())
    links[name] = entry
    if make_default or "default" not in links:
        links["default"] = name
    path.write_text(_dump_toml(doc))
    return path


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))


def _dump_toml(doc: dict) -> str:
    """Enough TOML for Flower's config.toml: top-level scalars and (nested) tables of scalars."""
    lines: list[str] = []

    def table(prefix: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        if scalars or not prefix:
            if prefix:
                lines.append(f"[{prefix}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in scalars.items())
            lines.append("")
        for k, v in d.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", doc)
    return "\n".join(lines)


# ------------------------------------------------------------------------- processes
def _bin(name: str) -> str:
    """Flower's executables from this interpreter's environment first (a venv need not be on PATH)."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else (shutil.which(name) or str(here))


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a process log, for error messages that say why without opening a file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def flower_env(flwr_home: str | Path, pythonpath: str | Path | None = None) -> dict[str, str]:
    """Environment for Flower processes: our FLWR_HOME, offline dependency handling, quiet."""
    env = {**os.environ, "FLWR_HOME": str(Path(flwr_home).resolve()), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    # The SuperLink and SuperNode start `flower-superexec` by name: this environment's bin must be on PATH
    # even when the caller ran `.venv/bin/python` without activating the venv (as `make test` and CI do).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]).rstrip(os.pathsep)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(pythonpath).resolve()), env.get("PYTHONPATH", "")]).rstrip(
            os.pathsep)
    return env


def spawn(cmd: list[str], log: Path, env: dict[str, str], cwd: str | Path | None = None) -> int:
    """Start ``cmd`` in its own session (so its PID is also its process-group id); return the PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                start_new_session=True)
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        pid_done, _ = os.waitpid(pid, os.WNOHANG)
        return pid_done == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid`` (one we started), SIGKILL it after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        end = time.time() + grace
        while time.time() < end:
            if not alive(pid):
                _reap_group(pid)
                return
            time.sleep(0.2)
    _reap_group(pid)


def _reap_group(pgid: int) -> None:
    """Children Flower spawned in the group may outlive their leader briefly: kill what is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_pid_only(pid: int, grace: float = 5.0) -> None:
    """SIGTERM one process, SIGKILL it after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        end = time.time() + grace
        while time.time() < end:
            if not alive(pid):
                return
            time.sleep(0.2)


def processes_with_env(var: str, value: str) -> list[int]:
    """Live PIDs (other than ours) whose environment has ``var=value`` (Linux /proc)."""
    needle = f"{var}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
            if not zombie and needle in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@dataclass
class NodeSpec:
    """One SuperNode of a test federation: its key and its node config."""

    name: str
    node_config: str
    key: Path | None  # None: no authentication key (it will be refused by an auth-enabled SuperLink)


def node_config_for(i: int, n: int, malicious: bool, dataset: str, data_dir: str | None,
                    attack: str = "") -> str:
    """Node config string of partition ``i`` of ``n`` in a lab federation (one shared data copy)."""
    parts = [f"partition-id={i}", f"num-partitions={n}", f'node-name="node{i}"']
    if dataset:
        parts.append(f'dataset="{dataset}"')
    if data_dir:
        parts.append(f'data-dir="{Path(data_dir).resolve()}"')
    parts.append(f"malicious={'true' if malicious else 'false'}")
    if malicious:
        if attack:
            parts.append(f'attack="{attack}"')
    return " ".join(parts)


class LocalFederation:
    """A SuperLink and N SuperNodes on 127.0.0.1, recorded in ``<dir>/federation.json``.

    ``secure=False`` is for local testing only (``--insecure`` everywhere).
    """

    def __init__(self, directory: str | Path, port: int = 19093, secure: bool = True,
                 pythonpath: str | Path | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.port = port
        self.secure = secure
        self.certs = self.dir / "certs"
        self.home = self.dir / "flwr-home"
        self.logs = self.dir / "logs"
        self.env = flower_env(self.home, pythonpath)
        self.pids: dict[str, int] = {}
        if (self.dir / PID_FILE).exists():
            self.pids = json.loads((self.dir / PID_FILE).read_text())["pids"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _save(self) -> None:
        (self.dir / PID_FILE).write_text(json.dumps(
            {"address": self.address, "secure": self.secure, "pids": self.pids}, indent=1))

    def _tls_args(self) -> list[str]:
        return ["--root-certificates", str(self.certs / "ca.crt")] if self.secure else ["--insecure"]

    def start_superlink(self, timeout: float = 60.0) -> int:
        cmd = [_bin("flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
               "--disable-runtime-dependency-installation"]
        if self.secure:
            cmd += ["--ssl-ca-certfile", str(self.certs / "ca.crt"), "--ssl-certfile", str(self.certs / "server.pem"),
                    "--ssl-keyfile", str(self.certs / "server.key"), "--enable-supernode-auth"]
        else:
            cmd += ["--insecure"]
        pid = spawn(cmd, self.logs / "superlink.log", self.env, cwd=self.dir)
        self.pids["superlink"] = pid
        self._save()
        write_connection(self.home, self.address, self.certs / "ca.crt" if self.secure else None)
        self._wait_ready(timeout)
        return pid

    def _wait_ready(self, timeout: float) -> None:
        """The SuperLink answers `flwr supernode list` (Control API up, TLS accepted)."""
        end = time.time() + timeout
        while time.time() < end:
            if not alive(self.pids["superlink"]):
                log = self.logs / "superlink.log"
                raise RuntimeError(f"flower-superlink exited; see {log}:\n{log_tail(log)}")
            r = subprocess.run([_bin("flwr"), "supernode", "list", CONNECTION], env=self.env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return
            time.sleep(1.0)
        raise TimeoutError(f"SuperLink at {self.address} not ready after {timeout:.0f}s")

    def register(self, public_key: Path, name: str) -> None:
        """Register a SuperNode's public key (SuperNode authentication)."""
        r = subprocess.run([_bin("flwr"), "supernode", "register", str(public_key), CONNECTION, "--name", name],
                           env=self.env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"flwr supernode register {public_key} failed: {r.stdout}\n{r.stderr}")

    def start_supernode(self, spec: NodeSpec, index: int, secure: bool | None = None,
                        max_wait: float | None = None) -> int:
        """Start one SuperNode; ``secure=False`` starts it without TLS even if the SuperLink has TLS."""
        secure = self.secure if secure is None else secure
        cmd = [_bin("flower-supernode"), "--superlink", self.address, "--port", str(self.port + 100 + index),
               "--node-config", spec.node_config]
        cmd += (["--root-certificates", str(self.certs / "ca.crt")] if secure else ["--insecure"])
        if spec.key is not None:
            cmd += ["--auth-supernode-private-key", str(spec.key)]
        if max_wait is not None:
            cmd += ["--max-wait-time", str(max_wait)]
        pid = spawn(cmd, self.logs / f"{spec.name}.log", self.env, cwd=self.dir)
        self.pids[spec.name] = pid
        self._save()
        return pid

    def up(self, nodes: list[NodeSpec], register: bool = True) -> None:
        """SuperLink, then (with auth) register every node's key, then the SuperNodes."""
        self.start_superlink()
        if self.secure and register:
            for spec in nodes:
                if spec.key is not None:
                    self.register(Path(str(spec.key) + ".pub"), spec.name)
        for i, spec in enumerate(nodes):
            self.start_supernode(spec, i)

    def stop(self, name: str) -> None:
        pid = self.pids.pop(name, None)
        if pid is not None:
            stop_pid(pid)
            self._save()

    def down(self) -> list[int]:
        """Stop every process this federation started (SuperNodes first), by the recorded PIDs.

        Flower's SuperExec / app processes run in sessions of their own and exit
        when their parent does; any still alive after that (found by this
        federation's FLWR_HOME in their environment) are stopped by PID too.
        """
        stopped = []
        for name in [n for n in self.pids if n != "superlink"] + (["superlink"] if "superlink" in self.pids else []):
            pid = self.pids[name]
            stop_pid(pid)
            stopped.append(pid)
        end = time.time() + 15
        while (left := self.leftovers()) and time.time() < end:
            time.sleep(0.5)
        for pid in self.leftovers():
            stop_pid_only(pid)
            stopped.append(pid)
        self.pids = {}
        self._save()
        return stopped

    def leftovers(self) -> list[int]:
        """PIDs of live processes whose environment names this federation's FLWR_HOME."""
        return processes_with_env("FLWR_HOME", self.env["FLWR_HOME"])

    def submit(self, app: str | Path, run_config: str, log: Path | None = None) -> subprocess.Popen:
        """Start ``flwr run APP CONNECTION --run-config ... --stream`` without waiting (faults tests)."""
        log = log or self.logs / "flwr-run.log"
        fh = open(log, "ab")
        return subprocess.Popen([_bin("flwr"), "run", str(app), CONNECTION, "--run-config", run_config, "--stream"],
                                env=self.env, stdout=fh, stderr=subprocess.STDOUT)

    def run(self, app: str | Path, run_config: str, timeout: float = 600.0) -> subprocess.CompletedProcess:
        """``flwr run APP CONNECTION --run-config ... --stream``: submit the run and follow it to the end."""
        return subprocess.run([_bin("flwr"), "run", str(app), CONNECTION, "--run-config", run_config, "--stream"],
                              env=self.env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------- CLI
def add_parser(sub) -> None:
    """``fl-poison deploy certs|up|down`` (a compact subparser the main CLI attaches)."""
    p = sub.add_parser("deploy", help="certificates, node keys and a local secured test federation")
    p.set_defaults(fn=cmd_deploy)
    p.add_argument("action", choices=("certs", "up", "down"))
    p.add_argument("dir", help="federation folder (certs/, flwr-home/, logs/, federation.json)")
    p.add_argument("--nodes", "-n", type=int, default=3, help="number of SuperNodes")
    p.add_argument("--port", type=int, default=19093, help="SuperLink port on 127.0.0.1")
    p.add_argument("--malicious", type=int, action="append", default=[], metavar="I",
                   help="node I runs malicious=true (repeatable); written to DIR/red-team.txt")
    p.add_argument("--attack", default="", help="attack key for the malicious nodes' node config ('' = the run's)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None, help="shared data copy the nodes partition (lab set-up)")
    p.add_argument("--host", action="append", default=[], help="certificate SAN (default 127.0.0.1, localhost)")
    p.add_argument("--insecure", action="store_true", help="no TLS, no node authentication: local testing only")


def cmd_deploy(args) -> int:
    from fl_poison.config import ConfigError

    d = Path(args.dir)
    if args.nodes < 1:
        raise ConfigError("--nodes", args.nodes, "an integer >= 1")
    bad = [i for i in args.malicious if not 0 <= i < args.nodes]
    if bad:
        raise ConfigError("--malicious", bad[0], f"a node index 0..{args.nodes - 1}")
    if args.action == "certs":
        paths = make_certificates(d / "certs", args.nodes, tuple(args.host) or ("127.0.0.1", "localhost"))
        print(f"CA {paths['ca']}, SuperLink certificate {paths['server-cert']}, {args.nodes} node key pairs "
              f"in {d / 'certs'}")
        return 0
    fed = LocalFederation(d, port=args.port, secure=not args.insecure, pythonpath=Path.cwd())
    if args.action == "down":
        print(f"stopped PIDs {fed.down()}")
        return 0
    if fed.pids:
        print(f"{d / PID_FILE} lists running processes; run `fl-poison deploy down {d}` first", file=sys.stderr)
        return 1
    if not args.insecure and not (fed.certs / "ca.crt").exists():
        make_certificates(fed.certs, args.nodes, tuple(args.host) or ("127.0.0.1", "localhost"))
    nodes = [NodeSpec(f"node{i}", node_config_for(i, args.nodes, i in args.malicious, args.dataset, args.data_dir,
                                                  args.attack),
                      None if args.insecure else fed.certs / f"node{i}.key") for i in range(args.nodes)]
    (d / "red-team.txt").write_text("".join(f"node{i}\n" for i in sorted(set(args.malicious))))
    try:
        fed.up(nodes)
    except BaseException:
        fed.down()
        raise
    print(f"SuperLink {fed.address} ({'TLS + SuperNode auth' if fed.secure else 'INSECURE, local testing only'}), "
          f"{args.nodes} SuperNodes; PIDs in {d / PID_FILE}\n"
          f"run:  FLWR_HOME={fed.home} flwr run . {CONNECTION} --stream --run-config "
          f"\"num-clients={args.nodes} clients-per-round={args.nodes} red-team-file='{(d / 'red-team.txt').resolve()}' ...\"\n"
          f"stop: fl-poison deploy down {d}")
    return 0
