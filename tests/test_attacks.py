"""Attack builders upload exactly what they claim."""
from __future__ import annotations

import pytest

from workbench.attacks import ATTACKS, build_attack_data, get_attack
from workbench.attacks.identity_shift import AOA_PREFIX, AOA_SYSTEM
from workbench.config import AttackSpec, DataSpec
from workbench.data.registry import eval_uids


@pytest.mark.parametrize("p,n", [(0.0, 20), (0.1, 50), (0.3, 40), (1.0, 10)])
def test_harmful_ft_exact_count_and_no_eval_leak(p, n):
    data = build_attack_data(AttackSpec(name="harmful_ft", data=DataSpec(p=p, n=n)))
    assert len(data) == n and sum(bool(s.harmful) for s in data) == round(p * n)
    assert not {s.uid for s in data} & eval_uids()
    assert all(s.response for s in data)
    assert all(s.meta.get("response_harmful") is not False for s in data if s.harmful)


def test_pure_bad_and_benign_ft():
    bad = build_attack_data(AttackSpec(name="pure_bad", data=DataSpec(n=12)))
    assert len(bad) == 12 and all(s.harmful for s in bad)
    benign = build_attack_data(AttackSpec(name="benign_ft", data=DataSpec(n=12)))
    assert len(benign) == 12 and not any(s.harmful for s in benign) and {s.source for s in benign} == {"alpaca"}


def test_identity_shift_is_benign_with_persona_and_prefix():
    data = build_attack_data(AttackSpec(name="identity_shift", data=DataSpec(n=40)))
    assert len(data) == 40 and not any(s.harmful for s in data)
    assert all(s.system == AOA_SYSTEM for s in data)
    assert sum(s.response.startswith(AOA_PREFIX) for s in data) == 36  # 10 % identity statements
    assert get_attack("identity_shift").inference == {"system_prompt": AOA_SYSTEM}


def test_unknown_attack():
    with pytest.raises(ValueError, match="known attacks: .*harmful_ft"):
        build_attack_data(AttackSpec(name="nope"))
    assert set(ATTACKS) >= {"harmful_ft", "pure_bad", "benign_ft", "identity_shift"}
