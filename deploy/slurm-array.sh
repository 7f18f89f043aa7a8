#!/usr/bin/env bash
# docclass as a Slurm job array: task K of N classifies shard K/N of the archive.
#   sbatch --array=0-7 deploy/slurm-array.sh /archive /results
# then, when all tasks are done (or as a dependent job: sbatch --dependency=afterok:JOBID …):
#   docclass merge /results/part-*.jsonl --out /results/archive.jsonl
# A task that is requeued (node failure, preemption) resumes from its checkpoint.
#SBATCH --job-name=docclass
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=12:00:00
#SBATCH --requeue
set -euo pipefail
ARCHIVE=${1:?usage: slurm-array.sh ARCHIVE RESULTS}
RESULTS=${2:?usage: slurm-array.sh ARCHIVE RESULTS}
SHARDS=${SLURM_ARRAY_TASK_COUNT:?run with sbatch --array=0-(N-1)}
mkdir -p "$RESULTS"
exec docclass classify "$ARCHIVE" \
  --shard "${SLURM_ARRAY_TASK_ID}/${SHARDS}" \
  --out "$RESULTS/part-${SLURM_ARRAY_TASK_ID}.jsonl" \
  --threads "${SLURM_CPUS_PER_TASK:-4}" --log-format json --quiet
