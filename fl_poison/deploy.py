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
from ``$FLWR_HOME/config.toml`` (``[superlink.NAME] address, root-certificates``);
``flower-supernode --isolation process`` starts no SuperExec and leaves its Runtime API (``--port``) to a
ClientApp process started beside it (here ``fl_poison/app/warm_clientapp.py``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fl_poison.deploy_checks import (DeployError, busy_ports, check_node_keys, check_server_certificates,
                                     host_problem, node_key_count, port_problem)
from fl_poison.deploy_procs import (SUPERLINK, SUPERNODE, WARM, flower_processes_with_home, not_ours, proc_info,
                                    start_time)

PID_FILE = "federation.json"
CONNECTION = "fl-poison-local"
#: ``process``: one long-lived ClientApp process per SuperNode (fast rounds); ``subprocess``: Flower's default,
#: a fresh ``flwr-clientapp`` per message (see docs/deployment.md for when to use which)
ISOLATION_MODES = ("process", "subprocess")
WARM_CLIENTAPP = Path(__file__).resolve().parent / "app" / WARM
CLIENTAPP_SUFFIX = "-clientapp"


def clientapp_name(node: str) -> str:
    """The record name of ``node``'s long-lived ClientApp process."""
    return node + CLIENTAPP_SUFFIX


def _what(name: str) -> str:
    """A recorded process as error messages name it."""
    if name == "superlink":
        return "flower-superlink"
    if name.endswith(CLIENTAPP_SUFFIX):
        return f"the ClientApp process of SuperNode {name[:-len(CLIENTAPP_SUFFIX)]}"
    return f"SuperNode {name}"


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


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def last_line(text: str) -> str:
    """The last non-blank line of ``text`` without terminal colours: the line that says why."""
    lines = [ln.strip() for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def last_log_line(path: Path) -> str:
    try:
        return last_line(path.read_text(errors="replace"))
    except OSError:
        return ""


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


@dataclass
class DownReport:
    """What ``down`` did: names stopped, names skipped with the reason, names already gone."""

    stopped: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    gone: list[tuple[str, int]] = field(default_factory=list)

    def lines(self) -> tuple[list[str], list[str]]:
        """(stdout lines, stderr lines): one line for the stopped / gone, one per skipped process."""
        out = []
        if self.stopped:
            out.append("stopped " + ", ".join(f"{n} (PID {p})" for n, p in self.stopped))
        if self.gone:
            out.append("already gone: " + ", ".join(f"{n} (PID {p})" for n, p in self.gone))
        if not out:
            out.append("stopped nothing" if self.skipped else "nothing was running")
        return out, [f"skipped {n} (PID {p}): {why}; left running" for n, p, why in self.skipped]


def read_record(path: Path) -> dict:
    """``federation.json`` checked for shape: ``address``, ``pids`` {name: PID}, optional ``started`` {name: tick}."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError(f"{path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DeployError(f"{path} is not valid JSON ({exc}); nothing was stopped or started: delete it once "
                          "the federation's flower-* processes are stopped") from None
    ints = lambda d: isinstance(d, dict) and all(  # noqa: E731
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0 for k, v in d.items())
    if not (isinstance(doc, dict) and isinstance(doc.get("address"), str) and ints(doc.get("pids"))
            and ints(doc.get("started", {}))):
        raise DeployError(f"{path} is not a federation record (wanted address, pids {{name: PID}}, started); "
                          "nothing was stopped or started: delete it once the federation's flower-* "
                          "processes are stopped")
    return doc


class LocalFederation:
    """A SuperLink and N SuperNodes on 127.0.0.1, recorded in ``<dir>/federation.json``.

    ``secure=False`` is for local testing only (``--insecure`` everywhere).
    The record keeps each process's PID and start time, so ``down`` stops only
    processes that are still the ones started here (see ``deploy_procs``).
    """

    def __init__(self, directory: str | Path, port: int = 19093, secure: bool = True,
                 pythonpath: str | Path | None = None, isolation: str = "process") -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation must be one of {ISOLATION_MODES}, not {isolation!r}")
        self.dir = Path(directory).resolve()
        self.port = port
        self.secure = secure
        self.isolation = isolation
        self.certs = self.dir / "certs"
        self.home = self.dir / "flwr-home"
        self.logs = self.dir / "logs"
        self.env = flower_env(self.home, pythonpath)
        self.pids: dict[str, int] = {}
        self.started: dict[str, int] = {}
        self.address_recorded = self.address
        if (self.dir / PID_FILE).exists():
            doc = read_record(self.dir / PID_FILE)
            self.pids, self.started = dict(doc["pids"]), dict(doc.get("started", {}))
            self.address_recorded = doc["address"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {"address": self.address_recorded, "secure": self.secure, "pids": self.pids, "started": self.started}
        (self.dir / PID_FILE).write_text(json.dumps(record, indent=1))

    def _record(self, name: str, pid: int) -> None:
        self.address_recorded = self.address
        self.pids[name] = pid
        tick = start_time(pid)  # our unreaped child: its PID cannot have been reused yet
        if tick is not None:
            self.started[name] = tick
        else:
            self.started.pop(name, None)
        self._save()

    def _spawn(self, name: str, cmd: list[str]) -> int:
        pid = spawn(cmd, self.logs / f"{name}.log", self.env, cwd=self.dir)
        self._record(name, pid)
        return pid

    def start_superlink(self, timeout: float = 60.0) -> int:
        cmd = [_bin("flower-superlink"), "--host", "127.0.0.1", "--port", str(self.port),
               "--disable-runtime-dependency-installation"]
        if self.secure:
            cmd += ["--ssl-ca-certfile", str(self.certs / "ca.crt"), "--ssl-certfile", str(self.certs / "server.pem"),
                    "--ssl-keyfile", str(self.certs / "server.key"), "--enable-supernode-auth"]
        else:
            cmd += ["--insecure"]
        pid = self._spawn("superlink", cmd)
        write_connection(self.home, self.address, self.certs / "ca.crt" if self.secure else None)
        self._wait_ready(timeout)
        return pid

    def _exited(self, name: str, what: str) -> DeployError:
        log = self.logs / f"{name}.log"
        last = last_log_line(log)
        return DeployError(f"{what} exited during start-up ({'last log line: ' + repr(last) if last else 'no log'}); "
                           f"see {log}", code=1)

    def _wait_ready(self, timeout: float) -> None:
        """The SuperLink answers `flwr supernode list` (Control API up, TLS accepted)."""
        end, said = time.time() + timeout, ""
        while time.time() < end:
            if not alive(self.pids["superlink"]):
                raise self._exited("superlink", "flower-superlink")
            r = subprocess.run([_bin("flwr"), "supernode", "list", CONNECTION], env=self.env,
                               capture_output=True, text=True, timeout=30)
            if r.returncode == 0:
                return
            said = last_line(r.stdout + "\n" + r.stderr)
            time.sleep(1.0)
        raise DeployError(f"SuperLink at {self.address} did not answer within {timeout:.0f} s "
                          f"(flwr said: {said!r}); see {self.logs / 'superlink.log'}", code=1)

    def online_nodes(self) -> int | None:
        """How many SuperNodes the SuperLink lists as online (None: it did not answer)."""
        r = subprocess.run([_bin("flwr"), "supernode", "list", CONNECTION, "--format", "json"], env=self.env,
                           capture_output=True, text=True, timeout=30)
        try:
            nodes = json.loads(r.stdout)["nodes"]
        except (ValueError, KeyError, TypeError):
            return None
        return sum(1 for n in nodes if n.get("status") == "online")

    def wait_nodes_online(self, names: list[str], timeout: float = 90.0) -> None:
        """Every SuperNode in ``names`` (and its ClientApp process) keeps running and the SuperLink lists as many online."""
        end, online = time.time() + timeout, None
        watched = ["superlink", *names, *(clientapp_name(n) for n in names if clientapp_name(n) in self.pids)]
        while time.time() < end:
            for name in watched:
                if not alive(self.pids[name]):
                    raise self._exited(name, _what(name))
            online = self.online_nodes()
            if online is not None and online >= len(names):
                return
            time.sleep(1.0)
        raise DeployError(f"{online or 0} of {len(names)} SuperNodes online after {timeout:.0f} s; "
                          f"see their logs in {self.logs}", code=1)

    def register(self, public_key: Path, name: str) -> None:
        """Register a SuperNode's public key (SuperNode authentication)."""
        r = subprocess.run([_bin("flwr"), "supernode", "register", str(public_key), CONNECTION, "--name", name],
                           env=self.env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise DeployError(f"flwr supernode register {public_key} failed: "
                              f"{last_line(r.stdout + chr(10) + r.stderr)!r}", code=1)

    def start_supernode(self, spec: NodeSpec, index: int, secure: bool | None = None,
                        max_wait: float | None = None) -> int:
        """Start one SuperNode; ``secure=False`` starts it without TLS even if the SuperLink has TLS.

        With ``isolation="process"`` the SuperNode starts no SuperExec; its long-lived
        ClientApp process (``warm_clientapp``) is started beside it, recorded as ``NAME-clientapp``.
        """
        secure = self.secure if secure is None else secure
        runtime_port = self.port + 100 + index
        cmd = [_bin("flower-supernode"), "--superlink", self.address, "--port", str(runtime_port),
               "--node-config", spec.node_config, "--isolation", self.isolation]
        cmd += (["--root-certificates", str(self.certs / "ca.crt")] if secure else ["--insecure"])
        if spec.key is not None:
            cmd += ["--auth-supernode-private-key", str(spec.key)]
        if max_wait is not None:
            cmd += ["--max-wait-time", str(max_wait)]
        pid = self._spawn(spec.name, cmd)
        if self.isolation == "process":
            self._spawn(clientapp_name(spec.name), [
                sys.executable, str(WARM_CLIENTAPP), "--runtime-api-address", f"127.0.0.1:{runtime_port}",
                "--insecure", "--parent-pid", str(pid), "--federation", f"{self.dir}/"])
        return pid

    def up(self, nodes: list[NodeSpec], register: bool = True, wait_online: bool = True) -> None:
        """SuperLink, then (with auth) register every node's key, then the SuperNodes, then wait for them online."""
        self.start_superlink()
        if self.secure and register:
            for spec in nodes:
                if spec.key is not None:
                    self.register(Path(str(spec.key) + ".pub"), spec.name)
        for i, spec in enumerate(nodes):
            self.start_supernode(spec, i)
        if wait_online:
            self.wait_nodes_online([spec.name for spec in nodes])

    def why_not_ours(self, name: str) -> str | None:
        """Why the process recorded as ``name`` is not (or no longer) this federation's; None: it is."""
        expected = SUPERLINK if name == "superlink" else WARM if name.endswith(CLIENTAPP_SUFFIX) else SUPERNODE
        return not_ours(proc_info(self.pids[name]), expected,
                        self.started.get(name), self.env["FLWR_HOME"], str(self.dir), self.address_recorded)

    def running(self) -> list[str]:
        """Recorded names whose process is alive and provably this federation's."""
        return [name for name in self.pids if self.why_not_ours(name) is None]

    def stop(self, name: str) -> None:
        if name in self.pids:
            if self.why_not_ours(name) is None:
                stop_pid(self.pids[name])
            del self.pids[name]
            self.started.pop(name, None)
            self._save()

    def down(self) -> DownReport:
        """Stop every recorded process that is provably this federation's (SuperNodes first).

        A recorded PID whose process has another start time, program, folder,
        port or FLWR_HOME is skipped and reported. Flower's SuperExec / app
        processes run in sessions of their own and exit when their parent
        does; Flower processes still alive after that with this federation's
        FLWR_HOME are stopped by PID too.
        """
        report = DownReport()
        order = [n for n in self.pids if n != "superlink"] + (["superlink"] if "superlink" in self.pids else [])
        for name in order:
            pid, why = self.pids[name], self.why_not_ours(name)
            if why is None:
                stop_pid(pid)
                report.stopped.append((name, pid))
            elif why == "not running":
                report.gone.append((name, pid))
            else:
                report.skipped.append((name, pid, why))
        end = time.time() + 15
        while self.leftovers() and time.time() < end:
            time.sleep(0.5)
        for pid in self.leftovers():
            stop_pid_only(pid)
            report.stopped.append(("flower process", pid))
        self.pids, self.started = {}, {}
        if self.dir.exists():
            self._save()
        return report

    def leftovers(self) -> list[int]:
        """PIDs of live Flower processes whose environment names this federation's FLWR_HOME."""
        return flower_processes_with_home(self.env["FLWR_HOME"])

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
CERT_FILES = ("ca.crt", "ca.key", "server.pem", "server.key")
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


def add_parser(sub) -> None:
    """``fl-poison deploy certs|up|down`` (a compact subparser the main CLI attaches)."""
    p = sub.add_parser("deploy", help="certificates, node keys and a local secured test federation")
    p.set_defaults(fn=cmd_deploy)
    p.add_argument("action", choices=("certs", "up", "down"))
    p.add_argument("dir", help="federation folder (certs/, flwr-home/, logs/, federation.json)")
    p.add_argument("--nodes", "-n", type=int, default=3, help="number of SuperNodes")
    p.add_argument("--port", type=int, default=19093,
                   help="SuperLink port on 127.0.0.1 (SuperNode I listens on PORT + 100 + I)")
    p.add_argument("--malicious", type=int, action="append", default=[], metavar="I",
                   help="node I runs malicious=true (repeatable); written to DIR/red-team.txt")
    p.add_argument("--attack", default="", help="attack key for the malicious nodes' node config ('' = the run's)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None, help="shared data copy the nodes partition (lab set-up)")
    p.add_argument("--host", action="append", default=[],
                   help="certificate SAN besides 127.0.0.1 and localhost (repeatable)")
    p.add_argument("--insecure", action="store_true", help="no TLS, no node authentication: local testing only")
    p.add_argument("--isolation", choices=ISOLATION_MODES, default="process",
                   help="process (default): one long-lived ClientApp process per SuperNode; "
                        "subprocess: Flower's fresh flwr-clientapp per message")
    p.add_argument("--force", action="store_true", help="certs: replace an existing CA and node keys")


def _check_args(args) -> None:
    """Every option, before anything is read, written or started."""
    from fl_poison.config import ConfigError

    if args.nodes < 1:
        raise ConfigError("--nodes", args.nodes, "an integer >= 1")
    bad = [i for i in args.malicious if not 0 <= i < args.nodes]
    if bad:
        raise ConfigError("--malicious", bad[0], f"a node index 0..{args.nodes - 1}")
    if (why := port_problem(args.port, args.nodes)) is not None:
        raise ConfigError("--port", args.port, why)
    for h in args.host:
        if (why := host_problem(h)) is not None:
            raise ConfigError("--host", h, why)


def _san_hosts(args) -> tuple[str, ...]:
    """The certificate's names: the ``--host`` ones first (the first is its CN), then loopback's."""
    return tuple(dict.fromkeys([*args.host, *DEFAULT_HOSTS]))


def _existing_certs(certs: Path) -> list[str]:
    return [f for f in CERT_FILES if (certs / f).exists()] + [f"node{i}.key" for i in range(node_key_count(certs))]


def _certs(args, d: Path) -> int:
    certs = d / "certs"
    have = _existing_certs(certs)
    if have and not args.force:
        raise DeployError(f"{certs} already holds {', '.join(have[:4])}{', ...' if len(have) > 4 else ''}: "
                          "--force replaces the CA and every node key (registered SuperNodes must then be "
                          "registered again)")
    if have and (d / PID_FILE).exists() and LocalFederation(d).running():
        raise DeployError(f"the federation in {d} is running on these certificates: "
                          f"`fl-poison deploy down {d}` first")
    for stale in certs.glob("node*.key*") if have else ():
        stale.unlink()
    hosts = _san_hosts(args)
    paths = make_certificates(certs, args.nodes, hosts)
    print(f"CA {paths['ca']}, SuperLink certificate {paths['server-cert']} ({', '.join(hosts)}), "
          f"{args.nodes} node key pairs in {certs}")
    return 0


def _down(d: Path) -> int:
    if not (d / PID_FILE).exists():
        raise DeployError(f"{d / PID_FILE} not found: no federation was started in {d} "
                          f"(`fl-poison deploy up {d}` starts one)")
    report = LocalFederation(d).down()
    out, err = report.lines()
    for line in out:
        print(line)
    for line in err:
        print(f"fl-poison: {line}", file=sys.stderr)
    return 0


def _preflight(args, fed: LocalFederation) -> None:
    """Everything that can be known wrong before a process starts; certificates made here when absent."""
    if running := fed.running():
        raise DeployError(f"{fed.dir / PID_FILE} lists running processes ({', '.join(running)}); "
                          f"run `fl-poison deploy down {args.dir}` first", code=1)
    fed.pids, fed.started = {}, {}  # nothing recorded is this federation's and alive: a fresh record
    if (why := busy_ports(args.port, args.nodes)) is not None:
        raise DeployError(f"--port {args.port}: {why}; choose another --port")
    if args.insecure:
        return
    if not _existing_certs(fed.certs):
        make_certificates(fed.certs, args.nodes, _san_hosts(args))
    check_server_certificates(fed.certs)
    check_node_keys(fed.certs, args.nodes)


def _up(args, d: Path) -> int:
    fed = LocalFederation(d, port=args.port, secure=not args.insecure, pythonpath=Path.cwd(),
                          isolation=args.isolation)
    _preflight(args, fed)
    nodes = [NodeSpec(f"node{i}", node_config_for(i, args.nodes, i in args.malicious, args.dataset, args.data_dir,
                                                  args.attack),
                      None if args.insecure else fed.certs / f"node{i}.key") for i in range(args.nodes)]
    d.mkdir(parents=True, exist_ok=True)
    (d / "red-team.txt").write_text("".join(f"node{i}\n" for i in sorted(set(args.malicious))))
    try:
        fed.up(nodes)
    except KeyboardInterrupt:
        fed.down()
        print(f"fl-poison: interrupted; stopped what was started in {d}", file=sys.stderr)
        return 130
    except DeployError:
        fed.down()
        raise
    except (OSError, subprocess.SubprocessError) as exc:
        fed.down()
        raise DeployError(f"starting the federation in {d} failed ({exc}); stopped what was started", code=1) from None
    print(f"SuperLink {fed.address} ({'TLS + SuperNode auth' if fed.secure else 'INSECURE, local testing only'}), "
          f"{args.nodes} SuperNodes online; PIDs in {d / PID_FILE}\n"
          f"run:  FLWR_HOME={fed.home} flwr run . {CONNECTION} --stream --run-config "
          f"\"num-clients={args.nodes} clients-per-round={args.nodes} red-team-file='{(d / 'red-team.txt').resolve()}' ...\"\n"
          f"stop: fl-poison deploy down {d}")
    return 0


def cmd_deploy(args) -> int:
    """certs | up | down; a refusal or failure is one line on stderr (exit 2: bad input, 1: it failed)."""
    _check_args(args)
    d = Path(args.dir)
    try:
        if d.exists() and not d.is_dir():
            raise DeployError(f"{d} is not a folder")
        return {"certs": _certs, "down": lambda a, p: _down(p), "up": _up}[args.action](args, d)
    except DeployError as exc:
        print(f"fl-poison: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"fl-poison: interrupted during `deploy {args.action}`", file=sys.stderr)
        return 130
