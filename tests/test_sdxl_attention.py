"""The painter's attention processors: the region IP-Adapter processor against diffusers' own, on CPU."""

from __future__ import annotations

import pytest
import torch


def _layer():
    """One SDXL-shaped cross-attention (8×8 tokens) with two adapters: two masked images, one whole-frame image."""
    from diffusers.models.attention_processor import Attention, IPAdapterAttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=32, cross_attention_dim=24, heads=2, dim_head=16)
    reference = IPAdapterAttnProcessor2_0(hidden_size=32, cross_attention_dim=24, num_tokens=(4, 4),
                                          scale=[[0.7, 0.3], 0.5])
    torch.nn.init.normal_(reference.to_k_ip[0].weight)  # random, so each image's attention differs
    masks = torch.zeros(1, 2, 32, 32)
    masks[0, 0, :, :16], masks[0, 1, :, 16:] = 1, 1
    inputs = {
        "hidden_states": torch.randn(2, 64, 32),
        "encoder_hidden_states": (torch.randn(2, 7, 24), [torch.randn(2, 2, 4, 24), torch.randn(2, 1, 4, 24)]),
    }
    return attn, reference, [masks, torch.ones(1, 1, 32, 32)], inputs


def test_region_processor_matches_diffusers_ip_adapter_processor():
    from diffusers.models.attention_processor import AttnProcessor2_0

    from animagent.backends.sdxl_attention import RegionIPAdapterProcessor, RegionMasks

    attn, reference, masks, inputs = _layer()
    region = RegionIPAdapterProcessor(32, 24, (4, 4), [[0.7, 0.3], 0.5])
    region.load_state_dict(reference.state_dict())
    expected = reference(attn, **inputs, ip_adapter_masks=masks)
    got = region(attn, **inputs, ip_adapter_masks=RegionMasks(masks))
    plain = AttnProcessor2_0()(attn, inputs["hidden_states"], inputs["encoder_hidden_states"][0])
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, plain, atol=1e-2)  # the adapters did contribute


def test_region_processor_skips_adapters_at_scale_zero_and_needs_masks_otherwise():
    from diffusers.models.attention_processor import AttnProcessor2_0

    from animagent.backends.sdxl_attention import RegionIPAdapterProcessor

    attn, _, _, inputs = _layer()
    silent = RegionIPAdapterProcessor(32, 24, (4, 4), [[0.0, 0.0], 0.0])
    plain = AttnProcessor2_0()(attn, inputs["hidden_states"], inputs["encoder_hidden_states"][0])
    assert torch.allclose(silent(attn, **inputs), plain, atol=1e-6)
    with pytest.raises(ValueError, match="ip_adapter_masks"):
        RegionIPAdapterProcessor(32, 24, (4, 4), [[0.7, 0.3], 0.5])(attn, **inputs)
