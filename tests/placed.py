"""Participants that ask Ray for something (importable by a cluster's workers)."""

from __future__ import annotations

from participants.payment import Payment


class LicensedPayment(Payment):
    """Runs only where the payment licence is (a node started with that resource)."""

    name = "licensed_payment"
    resources = {"payment_licence": 1}


class GpuPayment(Payment):
    """Asks for a GPU, which no node of the test cluster has."""

    name = "gpu_payment"
    num_gpus = 1
