"""Service tiers with their recovery objectives (seed 001: Atlassian's tiers 0-3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import models


class ServiceTier(models.TextChoices):
    TIER0 = "tier0", "Tier 0 (critical)"
    TIER1 = "tier1", "Tier 1 (production)"
    TIER2 = "tier2", "Tier 2 (non-critical)"
    TIER3 = "tier3", "Tier 3 (internal)"


@dataclass(frozen=True)
class Objectives:
    """Recovery point and recovery time objectives of a tier."""

    rpo: timedelta
    rto: timedelta


OBJECTIVES: dict[str, Objectives] = {
    ServiceTier.TIER0: Objectives(rpo=timedelta(hours=1), rto=timedelta(hours=4)),
    ServiceTier.TIER1: Objectives(rpo=timedelta(hours=1), rto=timedelta(hours=6)),
    ServiceTier.TIER2: Objectives(rpo=timedelta(hours=8), rto=timedelta(hours=24)),
    ServiceTier.TIER3: Objectives(rpo=timedelta(hours=24), rto=timedelta(hours=72)),
}


def objectives_for(tier: str) -> Objectives:
    return OBJECTIVES[ServiceTier(tier)]
