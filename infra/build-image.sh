#!/usr/bin/env bash
# Build and push the g2l image, resolve the digest the registry gave it, and compile the pipeline against
# that digest, so the compiled pipeline (and every model it registers) names exactly the image that ran.
#   infra/build-image.sh LOCATION-docker.pkg.dev/PROJECT_ID/g2l/g2l [CONFIG]
# CONFIG (optional) sizes step timeouts and staging disk for that cancer's plan.
set -euo pipefail

repo="${1:?usage: infra/build-image.sh REGISTRY/REPOSITORY [CONFIG]}"
config="${2:-}"
cd "$(git rev-parse --show-toplevel)"
if [ -n "$(git status --porcelain -- g2l components pipelines configs pyproject.toml)" ]; then
  echo "error: uncommitted changes under g2l/ components/ pipelines/ configs/: commit them first," \
       "so the image's G2L_GIT_COMMIT names the code it holds" >&2
  exit 1
fi
commit="$(git rev-parse HEAD)"
version="$(python -c 'import g2l; print(g2l.__version__)')"
tag="${repo}:${version}-${commit:0:12}"

docker build -f infra/Dockerfile --build-arg "GIT_COMMIT=${commit}" -t "${tag}" .
docker push "${tag}"
# The digest the registry stored (RepoDigests is filled by the push).
digest_ref="$(docker inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "${tag}" | grep "^${repo}@sha256:" | head -n1)"
if [ -z "${digest_ref}" ]; then
  echo "error: no digest for ${tag} after the push" >&2
  exit 1
fi
echo "image: ${digest_ref} (commit ${commit})"
g2l pipeline compile --image "${digest_ref}" ${config:+--config "${config}"}
echo "set pipeline.image: ${digest_ref} in the cancer configs, then: g2l pipeline preflight --config ..."
