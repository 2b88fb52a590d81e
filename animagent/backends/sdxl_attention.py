"""The attention processors the SDXL painter installs in its UNet, and the per-call masks they read.

Self-attention (attn1) gets one fused QKV matmul. Cross-attention (attn2), where the IP-Adapters live, gets
`RegionIPAdapterProcessor`: diffusers' `IPAdapterAttnProcessor2_0` with the same weights and the same result,
except that each reference's mask is resized to a layer's token grid once per call (`RegionMasks`) instead of in
every one of SDXL's 70 cross-attention layers, for every reference, at every step. Those resizes were a dozen
small kernels each, ≈ 7 000 launches per step: the H200 waited on the host for 115 of a keyframe step's 181 ms
(docs/benchmarks.md §4). `RegionMasks` is a pytree node, so that a CUDA graph of the UNet (`gpu.CudaGraphs`) takes its
masks as inputs: calls with other masks of the same shapes replay the same graph.
Heavy imports (torch, diffusers) happen when the module is imported; `animagent` never imports it eagerly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.image_processor import IPAdapterMaskProcessor
from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0, IPAdapterAttnProcessor2_0
from torch.utils import _pytree as pytree


class RegionMasks:
    """One call's IP-Adapter masks: per adapter, a [1, images, H, W] tensor from `IPAdapterMaskProcessor`.
    `weights` gives each image's mask resized to a layer's tokens, times its scale, computed once and reused."""

    def __init__(self, masks: list[torch.Tensor]):
        self.masks = masks
        self._resized: dict[tuple, list[torch.Tensor]] = {}

    def weights(self, adapter: int, tokens: int, scales: list[float], dtype: torch.dtype) -> list[torch.Tensor]:
        """[1, tokens, 1] per image: its scale where the image applies, 0 elsewhere (a soft edge from the resize)."""
        key = (adapter, tokens, tuple(scales), dtype)
        if key not in self._resized:
            mask = self.masks[adapter]
            if mask.shape[1] != len(scales):
                raise ValueError(f"adapter {adapter} has {mask.shape[1]} masks for {len(scales)} images; give one each")
            self._resized[key] = [
                (scale * IPAdapterMaskProcessor.downsample(mask[:, i], 1, tokens, 1)).to(dtype)
                for i, scale in enumerate(scales)
            ]
        return self._resized[key]


# Flattened to its masks alone: the resized weights are recomputed from them (inside a graph, by the graph).
pytree.register_pytree_node(RegionMasks, lambda m: (m.masks, None), lambda masks, _: RegionMasks(list(masks)),
                            serialized_type_name="animagent.RegionMasks")


class RegionIPAdapterProcessor(IPAdapterAttnProcessor2_0):
    """Cross-attention plus one attention per reference image, each added where its mask allows, at its scale.
    SDXL's cross-attention only: 3-D hidden states, no attention mask, group norm or spatial norm."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: tuple[torch.Tensor, list[torch.Tensor]],
        ip_adapter_masks: RegionMasks | None = None,
        **unused: object,
    ) -> torch.Tensor:
        encoder_hidden_states, ip_hidden_states = encoder_hidden_states
        residual = hidden_states
        batch, tokens, _ = hidden_states.shape
        heads, head_dim = attn.heads, attn.to_k.out_features // attn.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, heads, head_dim).transpose(1, 2)

        def merge(x: torch.Tensor) -> torch.Tensor:
            return x.transpose(1, 2).reshape(batch, -1, heads * head_dim)

        query = split(attn.to_q(hidden_states))
        hidden_states = merge(F.scaled_dot_product_attention(
            query, split(attn.to_k(encoder_hidden_states)), split(attn.to_v(encoder_hidden_states))))

        for adapter, (images, scale, to_k_ip, to_v_ip) in enumerate(
            zip(ip_hidden_states, self.scale, self.to_k_ip, self.to_v_ip)
        ):
            scales = scale if isinstance(scale, list) else [scale] * images.shape[1]
            if all(s == 0 for s in scales):
                continue  # what diffusers skips too: sketches, and the style adapter outside its block
            if ip_adapter_masks is None:
                raise ValueError("the painter's IP-Adapter layers need ip_adapter_masks (a RegionMasks) in every call")
            weights = ip_adapter_masks.weights(adapter, tokens, scales, query.dtype)
            for i, weight in enumerate(weights):
                image = images[:, i]
                attended = F.scaled_dot_product_attention(query, split(to_k_ip(image)), split(to_v_ip(image)))
                hidden_states = torch.addcmul(hidden_states, merge(attended), weight)

        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def install(unet) -> list[RegionIPAdapterProcessor]:
    """Fused QKV in every self-attention (−2.6 % per step on an H200); in every cross-attention with IP-Adapter
    weights, the region processor over the same weights, returned. Call again after loading adapters: it resets them."""
    processors = {}
    for name, processor in unet.attn_processors.items():
        if isinstance(processor, IPAdapterAttnProcessor2_0):
            region = RegionIPAdapterProcessor(
                processor.hidden_size, processor.cross_attention_dim, processor.num_tokens, processor.scale
            )
            region.to_k_ip, region.to_v_ip = processor.to_k_ip, processor.to_v_ip  # the loaded weights, not copies
            processor = region
        processors[name] = processor
    unet.set_attn_processor(processors)
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.endswith("attn1"):
            if not module.fused_projections:
                module.fuse_projections()
            module.set_processor(FusedAttnProcessor2_0())
    return [p for p in processors.values() if isinstance(p, RegionIPAdapterProcessor)]
