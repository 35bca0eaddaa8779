#!/usr/bin/env bash
# Type-check the installed layout: actors/ and transport/ live at the top of the repository
# but are the packages actorcluster.actors and actorcluster.transport. mypy cannot follow
# setuptools' editable finder, so check a tree of links in the installed shape.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/actorcluster"
for f in "$repo"/actorcluster/*; do ln -s "$f" "$tree/actorcluster/"; done
ln -s "$repo/actors" "$tree/actorcluster/actors"
ln -s "$repo/transport" "$tree/actorcluster/transport"
cd "$tree"
mypy --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache" -p actorcluster "$@"
