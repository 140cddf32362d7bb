"""Sweep decoding with the Explorer/MeDQN semantics (reference medqn_qdagger.md §A7)."""

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frugalrl.config import GridError, count_dict, decode, load_grid, swept_keys

MERL = Path(__file__).parent / "data" / "MERL_minatar_medqn_r.json"


def settings(idx):
    cfg, run = decode(load_grid(MERL), idx)
    return (
        cfg["env"]["name"],
        cfg["agent"]["consod_end"],
        cfg["agent"]["consod_epoch"],
        cfg["optimizer"]["kwargs"]["lr"],
        cfg["network_update_steps"],
        run,
    )


def test_worked_example_of_a7():
    assert count_dict(load_grid(MERL)) == 240
    assert settings(1) == ("Asterix-MinAtar-v0", 4, 2, 3e-3, 4, 0)
    assert settings(2) == ("Breakout-MinAtar-v0", 4, 2, 3e-3, 4, 0)
    assert settings(3) == ("SpaceInvaders-MinAtar-v0", 4, 2, 3e-3, 4, 0)
    assert settings(4) == ("Asterix-MinAtar-v0", 2, 2, 3e-3, 4, 0)
    assert settings(13) == ("Asterix-MinAtar-v0", 4, 2, 1e-3, 4, 0)
    assert settings(61) == ("Asterix-MinAtar-v0", 4, 2, 3e-3, 8, 0)
    assert settings(241)[:5] == settings(1)[:5] and settings(241)[5] == 1  # run 2 of idx 1


def test_decoded_values_are_plain_nested_dicts():
    cfg, _ = decode(load_grid(MERL), 1)
    assert cfg["optimizer"] == {"name": "RMSprop", "kwargs": {"lr": 3e-3, "alpha": 0.95, "centered": True, "eps": 0.01}}
    assert cfg["train_steps"] == 5e6


def test_sub_grids_occupy_consecutive_slots():
    grid = {"a": [1, {"b": [10, 20], "c": [0, 1]}, 3], "d": ["x", "y"]}
    # n(a) = 1 + 2*2 + 1 = 6
    assert count_dict(grid) == 12
    decoded = [decode(grid, i)[0] for i in range(1, 13)]
    assert [d["a"] for d in decoded[:6]] == [
        1,
        {"b": 10, "c": 0},
        {"b": 20, "c": 0},
        {"b": 10, "c": 1},
        {"b": 20, "c": 1},
        3,
    ]
    assert {d["d"] for d in decoded[:6]} == {"x"} and {d["d"] for d in decoded[6:]} == {"y"}


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.integers(1, 500))
def test_every_combination_appears_once_per_run(widths, idx):
    grid = {f"k{i}": list(range(w)) for i, w in enumerate(widths)}
    n = count_dict(grid)
    combos = {json.dumps(decode(grid, i)[0], sort_keys=True) for i in range(1, n + 1)}
    assert len(combos) == n
    cfg, run = decode(grid, idx)
    assert run == (idx - 1) // n and cfg == decode(grid, (idx - 1) % n + 1)[0]
    # first key fastest: index i+1 changes k0 unless k0 wrapped
    if widths[0] > 1 and idx % widths[0] != 0:
        assert decode(grid, idx + 1)[0]["k0"] == cfg["k0"] + 1


def test_swept_keys_name_only_what_varies():
    assert swept_keys(load_grid(MERL)) == [
        "env/name",
        "agent/consod_end",
        "agent/consod_epoch",
        "optimizer/kwargs/lr",
        "network_update_steps",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "top level must be a JSON object"),
        ('{"a": [1,}', "invalid JSON at line 1"),
        ('{"a": []}', "config key 'a' has no alternatives"),
    ],
)
def test_bad_grid_files(tmp_path, text, message):
    path = tmp_path / "g.json"
    path.write_text(text)
    with pytest.raises(GridError, match=message):
        load_grid(path)


def test_index_must_be_positive():
    with pytest.raises(GridError, match="positive integer"):
        decode({"a": [1]}, 0)


def test_path_keys_merge_into_their_section_and_keep_the_index_order():
    grid = {
        "consolidation": [{"lambda_end": [4, 2]}],
        "train/epochs_per_batch": [4, 1],
        "train": {"learning_starts": [1000]},
        "optimizer/lr": [1e-3, 1e-4],
        "train/train_every": [1, 8],
    }
    assert count_dict(grid) == 16
    combination, _ = decode(grid, 2 + 2 + 4 + 8)  # second choice of every key
    assert combination == {
        "consolidation": {"lambda_end": 2},
        "train": {"epochs_per_batch": 1, "learning_starts": 1000, "train_every": 8},
        "optimizer": {"lr": 1e-4},
    }
    assert swept_keys(grid) == [
        "consolidation/lambda_end",
        "train/epochs_per_batch",
        "optimizer/lr",
        "train/train_every",
    ]
    with pytest.raises(GridError, match="'train/train_every' is given twice"):
        decode({"train": {"train_every": [1]}, "train/train_every": [2]}, 1)


def test_merl_config_files_count_as_explorer_does():
    folder = Path(__file__).resolve().parents[1] / "configs" / "merl"
    counts = {path.name: count_dict(load_grid(path)) for path in folder.glob("MERL_*.json")}
    expected = {
        "MERL_mc_dqn.json": 100,
        "MERL_mc_dqn_small.json": 5,
        "MERL_mc_medqn.json": 180,
        "MERL_mc_medqn_lambda.json": 125,
        "MERL_acrobot_dqn.json": 10,
        "MERL_acrobot_medqn.json": 180,
        "MERL_minatar_dqn.json": 30,
        "MERL_minatar_medqn_r.json": 240,
        "MERL_minatar_medqn_u.json": 240,
        "MERL_seaquest_dqn.json": 5,
        "MERL_seaquest_medqn_r.json": 240,
        "MERL_seaquest_medqn_u.json": 80,
    }
    assert {name: counts[name] for name in expected} == expected
    # our MeDQN(R) MinAtar file decodes the worked example of A7 as Explorer's file does
    grid = load_grid(folder / "MERL_minatar_medqn_r.json")

    def pick(idx):
        cfg, run = decode(grid, idx)
        return (
            cfg["env"]["name"],
            cfg["consolidation"]["lambda_end"],
            cfg["train"]["epochs_per_batch"],
            cfg["optimizer"]["lr"],
            cfg["train"]["train_every"],
            run,
        )

    assert [pick(i) for i in (1, 2, 3)] == [
        (game, 4, 2, 3e-3, 4, 0) for game in ("Asterix-MinAtar-v0", "Breakout-MinAtar-v0", "SpaceInvaders-MinAtar-v0")
    ]
    assert pick(4)[:2] == ("Asterix-MinAtar-v0", 2)
    assert pick(13)[3] == 1e-3 and pick(61)[4] == 8
    assert pick(241) == pick(1)[:5] + (1,)


def test_medqn_atari_configs_parse_count_and_decode_the_papers_best_indices():
    from frugalrl.cli import load_config

    folder = Path(__file__).resolve().parents[1] / "configs" / "merl"
    assert count_dict(load_grid(folder / "MeDQN_atari_dqn.json")) == 10
    assert count_dict(load_grid(folder / "MeDQN_atari_medqn.json")) == 60

    def pick(idx):
        cfg = load_config(str(folder / "MeDQN_atari_medqn.json"), idx)  # validates against the schema
        return (
            cfg["env"]["name"].removesuffix("NoFrameskip-v4"),
            cfg["consolidation"]["lambda_end"],
            cfg["train"]["epochs_per_batch"],
            cfg["train"]["train_every"],
        )

    # gather_results.py's picks: update_per_step 0.05 / 0.025 = one update per 20 / 40 env steps
    assert pick(36) == ("Qbert", 2, 1, 20) and pick(40) == ("Phoenix", 2, 1, 20)
    assert [pick(i) for i in (52, 53, 54)] == [(g, 4, 1, 40) for g in ("BattleZone", "DoubleDunk", "NameThisGame")]
    dqn = load_config(str(folder / "MeDQN_atari_dqn.json"), 7)
    assert (dqn["env"]["name"], dqn["replay"]["capacity"]) == ("BattleZoneNoFrameskip-v4", 100_000)
    assert dqn["agent"]["target_unit"] == "grad_steps" and dqn["network"]["name"] == "nature_cnn"


def test_every_config_file_in_the_repository_is_valid():
    from frugalrl.cli import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.rglob("*.json"))
    assert len(files) >= 30
    for path in files:
        for idx in range(1, count_dict(load_grid(path)) + 1):
            load_config(str(path), idx)  # raises GridError / ConfigError naming the key


def test_with_varies_keys_of_several_sections_together():
    grid = {
        "seed": [0],
        "with": [
            {"model/kind": ["none"], "replay/batch_size": [320], "optimizer/lr": [1e-4, 2e-4]},
            {"model/kind": ["perfect"], "replay/batch_size": [32], "optimizer/lr": [4e-4]},
        ],
        "replay": {"capacity": [100]},
    }
    assert count_dict(grid) == 3
    combos = [decode(grid, i)[0] for i in (1, 2, 3)]
    assert [(c["model"]["kind"], c["replay"]["batch_size"], c["optimizer"]["lr"]) for c in combos] == [
        ("none", 320, 1e-4),
        ("none", 320, 2e-4),
        ("perfect", 32, 4e-4),
    ]
    assert combos[0]["replay"]["capacity"] == 100 and "with" not in combos[0]
    assert swept_keys(grid) == ["model/kind", "replay/batch_size", "optimizer/lr"]
    with pytest.raises(GridError, match="both inside 'with' and outside"):
        decode({"seed": [0], "with": [{"seed": [1]}]}, 1)
