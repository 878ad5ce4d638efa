#!/bin/bash
# Samples the CPU time (utime + stime, clock ticks) and peak RSS (VmHWM) of the trainer's
# task processes (and bench/gbm_prep_peak.py) every 10 s, one line per process:
#   <unix time> load=<1-min load> pid=<pid> cpu_ticks=<ticks> hwm_kb=<kB> ARTIFACT_URI=... CLOUD_RUN_TASK_INDEX=...
# For runs of bench/train_scale_bench.py started before it sampled its tasks itself, or cut
# short: `train_scale_bench.py --partial WORKDIR --sampler-log FILE` reads these lines.
#   nohup bench/proc_sample.sh > /tmp/sampler.log &
while true; do
  ts=$(date -u +%s); la=$(cut -d' ' -f1 /proc/loadavg)
  for pid in $(pgrep -f "python -m trainer --mode train$|gbm_prep_peak.py"); do
    env=$(tr '\0' '\n' < /proc/$pid/environ 2>/dev/null | grep -E "^(ARTIFACT_URI|CLOUD_RUN_TASK_INDEX)=" | tr '\n' ' ')
    st=$(awk '{print $14+$15}' /proc/$pid/stat 2>/dev/null)
    hwm=$(grep VmHWM /proc/$pid/status 2>/dev/null | awk '{print $2}')
    echo "$ts load=$la pid=$pid cpu_ticks=$st hwm_kb=$hwm $env"
  done
  sleep 10
done
