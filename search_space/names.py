"""Metric names, defined once. Records, objectives, reports and plots all use these."""

FINAL_AVG_ACCURACY = "final_avg_accuracy"      # mean_j R[T-1][j]
FORGETTING_LAST = "forgetting_last"            # Avalanche: mean_j (R[j][j] - R[T-1][j]), j < T-1
FORGETTING_MAX = "forgetting_max"              # Chaudhry: mean_j (max_{l<T-1} R[l][j] - R[T-1][j])
BWT = "bwt"                                    # mean_j (R[T-1][j] - R[j][j]), j < T-1
LEARNING_ACCURACY = "learning_accuracy"        # mean_j R[j][j]
ANYTIME_AVG_ACCURACY = "anytime_avg_accuracy"  # mean_i mean_{j<=i} R[i][j]
FLOPS = "flops"                                # forward FLOPs per sample (cost model)
PARAMS = "params"                              # total parameters (cost model)
ACTIVE_PARAMS = "active_params"                # parameters used per token (cost model)
KV_BYTES = "kv_bytes"                          # attention KV memory per sample (cost model)
ACTIVATION_BYTES = "activation_bytes"          # activation memory per sample (cost model)
FLOPS_EFFECTIVE = "flops_effective"            # FLOPs at the learned spans and realised k
ACTIVE_PARAMS_EFFECTIVE = "active_params_effective"   # params per token at the realised k
FINAL_AVG_BPC = "final_avg_bpc"                # mean_j B[T-1][j]: bits per labelled token
FORGETTING_BPC = "forgetting_bpc"              # mean_j (B[T-1][j] - B[j][j]), j < T-1 (rise)
LATENCY_MS = "latency_ms"                      # measured: batch-1 forward, median of repeats, trial's device

ACCURACY_METRICS = (FINAL_AVG_ACCURACY, LEARNING_ACCURACY, ANYTIME_AVG_ACCURACY)
FORGETTING_METRICS = (FORGETTING_LAST, FORGETTING_MAX, BWT)
STATIC_COST_METRICS = (FLOPS, PARAMS, ACTIVE_PARAMS, KV_BYTES, ACTIVATION_BYTES)  # arch alone
EFFECTIVE_COST_METRICS = (FLOPS_EFFECTIVE, ACTIVE_PARAMS_EFFECTIVE)          # + what training measured
COST_METRICS = STATIC_COST_METRICS + EFFECTIVE_COST_METRICS
BITS_METRICS = (FINAL_AVG_BPC, FORGETTING_BPC)      # from the bits matrix B (any task)
MEASURED_METRICS = (LATENCY_MS,)
ALL_METRICS = ACCURACY_METRICS + FORGETTING_METRICS + COST_METRICS + BITS_METRICS + MEASURED_METRICS

# One line each for `dynas list metrics` (R: the accuracy matrix, row = after training
# experience i, column = experience j; the formulas are in the comments above).
DESCRIPTIONS = {
    FINAL_AVG_ACCURACY: "accuracy over all experiences after the last one (max)",
    FORGETTING_LAST: "drop from each experience's just-learned accuracy to the end (min)",
    FORGETTING_MAX: "drop from each experience's best accuracy to the end (min)",
    BWT: "backward transfer: end accuracy minus just-learned accuracy (max; negative = forgetting)",
    LEARNING_ACCURACY: "accuracy on each experience right after learning it (max)",
    ANYTIME_AVG_ACCURACY: "accuracy on the experiences seen so far, averaged over time (max)",
    FLOPS: "forward FLOPs per sample, from the cost model (min)",
    PARAMS: "total parameters, from the cost model (min)",
    ACTIVE_PARAMS: "parameters used per token (MoE: the top-k experts), from the cost model (min)",
    KV_BYTES: "attention key/value memory per sample, from the cost model (min)",
    ACTIVATION_BYTES: "activation memory per sample, from the cost model (min)",
    FLOPS_EFFECTIVE: "forward FLOPs at the learned spans and realised k (min)",
    ACTIVE_PARAMS_EFFECTIVE: "parameters per token at the realised k (min)",
    FINAL_AVG_BPC: "bits per labelled token over all experiences after the last one (min)",
    FORGETTING_BPC: "rise in bits per token from just-learned to the end (min)",
    LATENCY_MS: "measured batch-1 forward time in ms, median of repeats, on the trial's device (min)",
}

# --- validation vs test ---------------------------------------------------------------
# The names above, without a prefix, are measured on each experience's VALIDATION split:
# the only numbers a policy, a scheduler or a pick sees. The same metric measured on the
# held-out TEST split is recorded as TEST_PREFIX + name (``test.final_avg_accuracy``);
# it is reported, never selected on. The rule is the prefix, not a list of names, so a
# metric added later gets its test twin for free.
TEST_PREFIX = "test."


def as_test(metric: str) -> str:
    """The test-split twin of a validation metric: ``test.<metric>``."""
    return TEST_PREFIX + metric


def is_test_metric(metric: str) -> bool:
    """Whether ``metric`` was measured on a test split (never an objective)."""
    return metric.startswith(TEST_PREFIX)


def selection_metrics(metrics: dict) -> dict:
    """``metrics`` without its test-split entries: what selection may see."""
    return {k: v for k, v in metrics.items() if not is_test_metric(k)}


def held_out_metrics(metrics: dict) -> dict:
    """Only the test-split entries of ``metrics`` (prefix kept). (Not ``test_*``: pytest
    would collect a function of that name wherever it is imported.)"""
    return {k: v for k, v in metrics.items() if is_test_metric(k)}
