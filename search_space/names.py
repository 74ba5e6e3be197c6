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
LATENCY_MS = "latency_ms"                      # measured: batch-1 forward, median of repeats, trial's device

ACCURACY_METRICS = (FINAL_AVG_ACCURACY, LEARNING_ACCURACY, ANYTIME_AVG_ACCURACY)
FORGETTING_METRICS = (FORGETTING_LAST, FORGETTING_MAX, BWT)
COST_METRICS = (FLOPS, PARAMS, ACTIVE_PARAMS, KV_BYTES, ACTIVATION_BYTES)
MEASURED_METRICS = (LATENCY_MS,)
ALL_METRICS = ACCURACY_METRICS + FORGETTING_METRICS + COST_METRICS + MEASURED_METRICS
