# A small image for the test workloads of the local node: a shell, python3 and
# kstrata (so `kstrata watch ...` and `python3 -c ...` run in it).
#
# It is the operator image with a shell's entry point: the same Debian base,
# the same hash-locked virtualenv, so it adds no layer of its own that a node
# has to store twice, and whatever kstrata a test exercises in the toolbox is
# byte for byte the one the operator runs.  tools/images/images.py builds it
# with buildah from the repository root, passing the local operator image:
#   --build-arg KSTRATA_IMAGE=docker.io/library/kstrata-operator:dev
ARG KSTRATA_IMAGE=kstrata-operator:dev
FROM ${KSTRATA_IMAGE}
LABEL org.opencontainers.image.title="kstrata toolbox (test workloads)"
# The virtualenv's python3 and kstrata come first on PATH (set by the operator
# image); the tests' pods name their command, or get a shell.
ENTRYPOINT []
CMD ["/bin/sh"]
# Numeric and non-root, as in the operator image; writes go to /tmp.
USER 10001:10001
