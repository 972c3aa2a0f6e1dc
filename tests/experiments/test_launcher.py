"""The launcher contract, end to end in subprocesses (as users and tools run it)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "experiments/configs/fgcnn.py"


def _launch(*args, workdir):
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""  # one CPU device, as a user's laptop
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _final(proc):
    lines = [line for line in proc.stdout.splitlines() if line.startswith("final: ")]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return json.loads(lines[0][len("final: ") :])


def test_tiny_run_writes_the_contract_and_resumes(tmp_path):
    work = str(tmp_path / "run")
    proc = _launch(f"--config={CONFIG}:tiny", "--config.train.progress=False", workdir=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = _final(proc)
    assert {"auc", "logloss", "oracle_auc", "valid_auc"} <= set(final)
    assert 0.5 < final["auc"] <= final["oracle_auc"] + 0.02
    assert proc.stdout.rstrip().splitlines()[-1].startswith("final: ")

    config = json.load(open(os.path.join(work, "config.json")))
    assert config["experiment"] == "fgcnn" and config["variant"] == "tiny"
    events = [json.loads(line) for line in open(os.path.join(work, "metrics.jsonl"))]
    assert events and all("step" in e and "split" in e for e in events)
    assert {"train", "valid", "test"} <= {e["split"] for e in events}
    assert any(
        n.startswith("events.out.tfevents") for n in os.listdir(os.path.join(work, "tensorboard"))
    )
    assert os.listdir(os.path.join(work, "checkpoints"))
    assert os.path.getsize(os.path.join(work, "plots", "learning_curves.png")) > 10_000
    assert json.load(open(os.path.join(work, "final.json"))) == final

    again = _launch(f"--config={CONFIG}:tiny", "--config.train.progress=False", workdir=work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from the checkpoint at step 32" in again.stderr
    rerun = _final(again)
    for key in ("auc", "logloss", "valid_auc", "valid_logloss"):
        assert rerun[key] == final[key], key


def test_misspelt_config_key_names_the_valid_keys(tmp_path):
    proc = _launch(
        f"--config={CONFIG}:tiny", "--config.train.lerning_rate=0.1", workdir=str(tmp_path)
    )
    assert proc.returncode != 0
    assert "unknown config key 'train.lerning_rate'" in proc.stderr
    assert "batch_size" in proc.stderr and "num_epochs" in proc.stderr
    proc = _launch(f"--config={CONFIG}:tiny", "--config.modle.name=lr", workdir=str(tmp_path))
    assert proc.returncode != 0 and "valid keys there" in proc.stderr and "model" in proc.stderr


def test_unknown_variant_is_a_clear_error(tmp_path):
    proc = _launch(f"--config={CONFIG}:huge", workdir=str(tmp_path))
    assert proc.returncode != 0 and "unknown fgcnn variant 'huge'" in proc.stderr


def test_paper_variant_without_data_says_where_to_put_it(tmp_path):
    empty = tmp_path / "criteo"
    empty.mkdir()
    proc = _launch(
        f"--config={CONFIG}:paper", f"--config.data.data_dir={empty}", workdir=str(tmp_path / "run")
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr
    assert "train.txt" in err and str(empty) in err and "data_dir" in err
