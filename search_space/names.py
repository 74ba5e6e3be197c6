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

ACCURACY_METRICS = (FINAL_AVG_ACCURACY, LEARNING_ACCURACY, ANYTIME_AVG_ACCURACY)
FORGETTING_METRICS = (FORGETTING_LAST, FORGETTING_MAX, BWT)
STATIC_COST_METRICS = (FLOPS, PARAMS, ACTIVE_PARAMS, KV_BYTES, ACTIVATION_BYTES)  # arch alone
EFFECTIVE_COST_METRICS = (FLOPS_EFFECTIVE, ACTIVE_PARAMS_EFFECTIVE)          # + what training measured
COST_METRICS = STATIC_COST_METRICS + EFFECTIVE_COST_METRICS
BITS_METRICS = (FINAL_AVG_BPC, FORGETTING_BPC)      # from the bits matrix B (any task)
ALL_METRICS = ACCURACY_METRICS + FORGETTING_METRICS + COST_METRICS + BITS_METRICS
