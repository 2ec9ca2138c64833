"""Measurements of the project on a machine: the GPU check (``scripts/gpu_check.sh``) and the host-device syncs it
counts."""
