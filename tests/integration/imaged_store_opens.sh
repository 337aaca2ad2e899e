#!/bin/bash
# imaged opens its store in one place, ServerContext::Open (imaged/context.cc);
# every other part takes the object store and its catalogue connections from
# the context main handed it. An open anywhere else in imaged/ fails here.
set -euo pipefail
src="$(cd "$(dirname "$0")/../../imaged" && pwd)"
found=$(grep -nE '\b(Store|ObjectStore|Catalog)::(Open|OpenAtVersion|Init|Create)\(' "$src"/*.cc "$src"/*.h |
        grep -v "^$src/context.cc:" || true)
if [ -n "$found" ]; then
  echo "imaged opens its store outside imaged/context.cc; take the store from the ServerContext" \
       "(ctx.objects(), ctx.Connect()) instead:" >&2
  echo "$found" >&2
  exit 1
fi
if ! grep -q 'dim::Store::Open' "$src/context.cc"; then
  echo "imaged/context.cc no longer opens the store: where does imaged open it now?" >&2
  exit 1
fi
echo "imaged_store_opens: imaged opens its store only in imaged/context.cc"
