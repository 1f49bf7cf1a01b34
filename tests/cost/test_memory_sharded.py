"""Per-process training memory under several processes and FSDP, and the estimate's proposal to shard a model that
does not fit one device."""

import dataclasses

from thrifty.cost.memory import largest_layer_parameters, training_memory


def _model(tiny_llama):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=2)
    model.config.pad_token_id = 0  # as thrifty sets it for a decoder without one (batches need it)
    return model


def test_fsdp_keeps_a_share_of_every_state_and_gathers_two_layers_whole(tiny_llama):
    model = _model(tiny_llama)
    one = training_memory(model, 8, 16)
    ddp = training_memory(model, 8, 16, processes=2)
    fsdp = training_memory(model, 8, 16, processes=2, sharded=True)
    assert ddp.weights == one.weights and ddp.activations < one.activations  # half the batch, all of the weights
    assert fsdp.weights == -(-one.weights // 2) and fsdp.optimizer == -(-one.optimizer // 2)
    layer = largest_layer_parameters(model)
    assert 0 < layer < sum(p.numel() for p in model.parameters())
    assert fsdp.gathered == 2 * 2 * layer * 4 and fsdp.total == (fsdp.weights + fsdp.gradients + fsdp.optimizer
                                                                  + fsdp.activations + fsdp.gathered)


def test_a_model_too_big_for_one_device_is_proposed_on_several_with_fsdp(tiny_llama, small_csv, monkeypatch):
    from thrifty.cost import estimate as estimate_mod
    from thrifty.cost import hardware as hardware_mod
    from thrifty.cost.estimate import estimate, format_estimate

    from tests.conftest import tiny_config

    real = hardware_mod.hardware_for

    def small_gpu(cost_config):  # an a10g with 4 MiB: the tiny model's 12 MiB of training state does not fit
        return dataclasses.replace(real(type(cost_config)(hardware="a10g")), memory_gib=4 / 1024)

    monkeypatch.setattr(hardware_mod, "hardware_for", small_gpu)
    config = tiny_config(tiny_llama, small_csv)
    e = estimate(config, calibration_steps=1)
    assert e["fits_memory"] is False and e["fsdp_to_fit"]["processes"] in (2, 4, 8, 16)
    assert e["fsdp_to_fit"]["peak_memory_bytes_per_process"] <= 4 * 2**20
    assert f"--processes {e['fsdp_to_fit']['processes']} --train.fsdp true" in format_estimate(e)
    assert estimate_mod  # the module the monkeypatch reaches through
