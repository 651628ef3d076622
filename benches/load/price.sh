#!/usr/bin/env bash
# What each optional feature costs a forwarded call, in instructions and heap
# allocations (callgrind, through the real binary): the shipped defaults, then
# one feature after another turned off, then bare hyper for the floor. Counts,
# not timings: they hold still on a noisy machine. About a minute a row.
#
#   benches/load/price.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
IDEM_OFF=$'[encore.idempotency]\nenabled = false'
CAP_OFF=$'[encore.integrator]\nthread_cap = 0'
RETRY_OFF=$'[encore.retry]\nmax_retries = 0'
row() { # label, server, then VAR=value ... for callgrind.sh
  local label=$1 server=$2; shift 2
  printf '%-32s ' "$label"
  env "$@" benches/load/callgrind.sh forward "$server" | sed 's/.*requests measured; //'
}
row "shipped defaults" offergate X=1
row "idempotency off" offergate OG_EXTRA="$IDEM_OFF"
row "... and the thread cap off" offergate OG_EXTRA="$IDEM_OFF"$'\n'"$CAP_OFF"
row "... and the rate limits off" offergate RATE_LIMITS=false OG_EXTRA="$IDEM_OFF"$'\n'"$CAP_OFF"
row "... and no retries" offergate RATE_LIMITS=false OG_EXTRA="$IDEM_OFF"$'\n'"$CAP_OFF"$'\n'"$RETRY_OFF"
row "bare hyper proxy (the floor)" bare X=1
