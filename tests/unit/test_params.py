"""Parameter counts per module (``reverie config --params``)."""

from reverie.config import load_config
from reverie.params import format_counts, parameter_counts

PARTS = ("encoder", "rssm", "decoder", "reward", "discount", "actor", "critic")


def test_atari_counts_match_the_paper_scale():
    counts = parameter_counts(load_config("atari"))
    assert counts["total"] == sum(counts[k] for k in PARTS)  # nothing outside the named parts
    world_model = sum(counts[k] for k in PARTS[:5])
    assert 18e6 < world_model < 22e6  # paper: ~20M
    assert 0.9e6 < counts["actor"] < 1.3e6 and 0.9e6 < counts["critic"] < 1.3e6  # paper: ~1M each


def test_continuous_preset_without_discount_head():
    counts = parameter_counts(load_config("dmc,debug"))
    assert counts["discount"] == 0 and counts["actor"] > 0


def test_format_lists_every_module_in_order():
    lines = format_counts({"actor": 1_500_000, "encoder": 2, "total": 1_500_002}).splitlines()
    assert [line.split()[0] for line in lines] == ["encoder", "actor", "total"]
    assert "1.50M" in lines[1] and "(1,500,000)" in lines[1]
