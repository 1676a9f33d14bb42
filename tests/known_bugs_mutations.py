"""Re-create the mutation probe's deliberately planted bugs one at a time in a scratch copy (/tmp/mut) and run tests on each.

Usage (repo root): python tests/known_bugs_mutations.py [test paths]   (default KNOWN_BUG_TESTS: the tests, each in its
unit's file, that were written for these bugs);
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
KNOWN_BUG_TESTS = [
    "tests/attacks/test_source_split.py::test_source_holder_attackers_hold_the_source_not_the_target",
    "tests/attacks/test_source_split.py::test_source_holder_attackers_in_a_real_federation",
    "tests/attacks/test_label_flip.py::test_label_flip_flips_every_source_label_and_nothing_else",
    "tests/attacks/test_label_flip.py::test_client_app_flipper_trains_on_every_source_sample_flipped",
    "tests/attacks/test_label_flip.py::test_client_app_honest_client_keeps_its_labels",
    "tests/attacks/test_untargeted_flip.py::test_client_app_untargeted_flip_relabels_every_sample",
    "tests/app/test_experiment.py::test_detection_counts_only_what_the_defense_judged_and_invalid_replies_apart",
    "tests/app/test_experiment.py::test_weight_means_are_split_by_the_run_plan",
    "tests/app/test_experiment.py::test_last10_detection_sums_only_the_last_ten_rounds",
    "tests/app/test_experiment.py::test_last10_metric_means_use_the_last_ten_rounds",
    "tests/defenses/test_foolsgold.py::test_foolsgold_strategy_weights_come_from_the_accumulated_history",
    "tests/core/test_partition.py::test_dirichlet_alpha_reaches_the_partitioner",
    "tests/app/test_client_app.py::test_received_accuracy_subsample_keeps_pairs",
    "tests/app/test_client_app.py::test_client_app_received_accuracy_on_a_subsample",
    "tests/app/test_client_app.py::test_injection_subset_is_reproducible_through_the_client_app",
    "tests/app/test_client_app.py::test_capture_updates_stores_output_rows_of_updates",
    "tests/app/test_client_app.py::test_capture_updates_off_stores_nothing",
    "tests/defenses/test_lfighter.py::test_lfighter_auto_mode_follows_the_partition",
    "tests/defenses/test_trimmed_mean.py::test_trim_beta_reaches_the_trimmed_mean",
    "tests/core/test_metrics.py::test_confusion_matrix_matches_sklearn",
    "tests/core/test_metrics.py::test_evaluate_confusion_puts_predictions_in_columns",
]
tests = sys.argv[1:] or KNOWN_BUG_TESTS
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
