#!/usr/bin/env bash
# Runs the farm (README.md) with the current kubectl context: the build Jobs of both
# architectures at once, then, from the digests they pushed, the manifest list (assemble.yaml).
# Needs the registry-auth Secret in the namespace. Stops at the first Job that fails.
set -euo pipefail
cd "$(dirname "$0")"

wait_for() {  # JOB TIMEOUT_SECONDS: returns when it completed; fails when it failed or timed out
  local job=$1 deadline=$((SECONDS + $2)) state
  while ((SECONDS < deadline)); do
    state=$(kubectl get "job/$job" -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case " $state " in
      *" Complete "*) return 0 ;;
      *" Failed "*)
        kubectl logs "job/$job" --all-containers --tail=50 >&2 || true
        echo "run.sh: job $job failed" >&2
        return 1
        ;;
    esac
    sleep 10
  done
  echo "run.sh: job $job did not finish in $2 s" >&2
  return 1
}

pushed_digest() {  # ARCH: the digest in the termination message of its build Job's pod
  kubectl get pods -l "batch.kubernetes.io/job-name=kiln-build-$1" \
    --field-selector=status.phase=Succeeded \
    -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.message}' |
    sed -n 's/.*"containerimage.digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p'
}

# Jobs are immutable: a new run replaces the previous one's.
kubectl delete job kiln-build-amd64 kiln-build-arm64 kiln-assemble --ignore-not-found
kubectl apply -k .
wait_for kiln-build-amd64 3600
wait_for kiln-build-arm64 3600

amd64=$(pushed_digest amd64)
arm64=$(pushed_digest arm64)
if [[ -z $amd64 || -z $arm64 ]]; then
  echo "run.sh: a build Job left no digest in its termination message" \
    "(amd64: '$amd64', arm64: '$arm64')" >&2
  exit 1
fi
kubectl create configmap kiln-farm-digests --from-literal=amd64="$amd64" \
  --from-literal=arm64="$arm64" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f assemble.yaml
wait_for kiln-assemble 1800
echo "registry.example.com/team/app:1.0 is the list of linux/amd64 $amd64 and linux/arm64 $arm64"
