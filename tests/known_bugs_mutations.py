"""Re-create the mutation probe's deliberately planted bugs one at a time in a scratch copy (/tmp/mut) and run tests on each.

Usage (repo root): python tests/known_bugs_mutations.py [test paths]   (default tests/test_known_bugs.py);
ONLY=<substring> picks one bug. Prints the failing tests per bug; a bug with failing=0 is not caught.
"""
import shutil, subprocess, sys, os, re
SRC = str(__import__("pathlib").Path(__file__).resolve().parents[1])
MUTS = {
 "01-attackers-among-target-holders": ("fl_poison/federation.py", 'source_holders([labels[p] for p in parts], cfg.source)', 'source_holders([labels[p] for p in parts], cfg.target)'),
 "02a-flip-half-in-flip_targeted": ("clients/poisoning.py", "out[out == source] = target", "out[np.flatnonzero(out == source)[::2]] = target"),
 "02b-flip-half-in-client": ("clients/attacks/label_flip.py", "    idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64))", "    src = np.flatnonzero(r.y.numpy()[idx] == source)\n    labels = np.array(labels); labels[src[::2]] = source\n    idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64))"),
 "03-invalid-replies-credited-as-flagged": ("fl_poison/app/experiment.py", "d = detect(rep.flagged, mal, rep.clients)", "d = detect(rep.flagged + sorted(rep.invalid), mal, participants)"),
 "04-foolsgold-history-overwritten": ("strategies/defenses/foolsgold.py", "self.history[c] = self.history.get(c, 0.0) + row", "self.history[c] = row"),
 "05-dirichlet-alpha-not-passed": ("fl_poison/federation.py", 'alpha=cfg["dirichlet-alpha"]', 'alpha=1.0'),
 "06-received-subsample-y[:n]": ("clients/behaviour.py", "x, y = x[idx], y[idx]", "x, y = x[idx], y[:n]"),
 "07-injection-rng-unseeded": ("clients/attacks/label_flip.py", 'rng = np.random.default_rng([c["seed"], r.server_round, r.cid, _INJECTION_SALT])', 'rng = np.random.default_rng()'),
 "08-lfighter-auto-always-mild": ("strategies/defenses/lfighter.py", 'mode = "extreme" if config["partition"] == "extreme" else "mild"', 'mode = "mild"'),
 "09-trim-beta-not-passed": ("strategies/defenses/trimmed_mean.py", 'allowed="a number in [0, 0.5)", param="beta")', 'allowed="a number in [0, 0.5)")'),
 "10-capture-models-not-updates": ("strategies/base.py", "report.output_rows = layout.output_rows(updates)", "report.output_rows = layout.output_rows(updates + g[~buf_cols])"),
 "11-weight-malicious-from-honest": ("fl_poison/app/experiment.py", "w_m = [w for c, w in zip(rep.clients, rep.weights) if c in mal", "w_m = [w for c, w in zip(rep.clients, rep.weights) if c not in mal"),
 "12-last10-detection-all-rounds": ("fl_poison/results.py", "for r in trained[-10:]:", "for r in trained:"),
 "13a-confusion-transposed-in-evaluate": ("fl_poison/training.py", "confusion_matrix(y.numpy(), pred, num_classes, outputs)", "confusion_matrix(pred, y.numpy(), num_classes, outputs)"),
 "13b-confusion-transposed-in-metric": ("fl_poison/metrics/classification.py", ".reshape(num_classes, outputs)", ".reshape(outputs, num_classes).T"),
}
tests = sys.argv[1:] or ["tests/test_known_bugs.py"]
only = os.environ.get("ONLY")
for name, (path, old, new) in MUTS.items():
    if only and only not in name: continue
    dst = "/tmp/mut"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(SRC, dst, ignore=shutil.ignore_patterns(".git", "results", "__pycache__", "mutants", ".hypothesis"))
    f = os.path.join(dst, path); s = open(f).read()
    assert s.count(old) == 1, (name, s.count(old))
    open(f, "w").write(s.replace(old, new))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=dst,
                       env={**os.environ, "PYTHONPATH": dst}, capture_output=True, text=True)
    failed = sorted(set(re.findall(r"^FAILED (\S+)", r.stdout, re.M)))
    print(f"{name}: rc={r.returncode} failing={len(failed)}")
    for t in failed: print("   ", t)
    sys.stdout.flush()
