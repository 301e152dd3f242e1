"""A CosyVoice2 model folder with random weights, laid out as the released one.

Builds what `CosyVoiceTts` loads from a CosyVoice2-0.5B download: `cosyvoice2.yaml`,
`llm.pt`, `flow.pt`, `hift.pt`, the Qwen2 folder `CosyVoice-BlankEN` (config, weights,
tokenizer), `campplus.onnx` and `speech_tokenizer_v2.onnx`. The LLM, flow and HiFT
modules are CosyVoice's own classes, built from the YAML by hyperpyyaml as CosyVoice
builds them. Two pieces stand in for downloads:

- the two ONNX models (the CAM++ speaker encoder and the speech tokenizer) are small
  graphs with the released models' inputs and outputs: the speaker embedding is a
  fixed projection of the mean fbank, the tokens are derived from the mel frames at
  the tokenizer's 25 Hz;
- the tokenizer is byte-level (one token per UTF-8 byte), not Qwen2.5's vocabulary.

`size="tiny"` makes every module a few layers wide (tests, seconds on a CPU);
`size="full"` has CosyVoice2-0.5B's sizes (a Qwen2.5-0.5B LLM, the 6-block flow
encoder, 16 decoder blocks, the 512-channel HiFT), so speed figures hold for the
released weights, not the voice, which is noise here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TOKEN_RATE = 25  # speech tokens per second, CosyVoice2's
SPEAKER_DIM = 192  # CAM++'s embedding size

_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(
        qwen=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=2, num_key_value_heads=1, vocab_size=512),
        speech_tokens=512, flow_input=512, flow_heads=2, flow_units=64, flow_blocks=1,
        channels=32, head_dim=16, n_blocks=1, mid_blocks=1, dec_heads=2, hift_channels=32,
        resblocks=[3], dilations=[[1]]),
    "full": dict(  # CosyVoice2-0.5B: Qwen2.5-0.5B and cosyvoice2.yaml's modules
        qwen=dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                  rope_theta=1000000.0),
        speech_tokens=6561, flow_input=512, flow_heads=8, flow_units=2048, flow_blocks=6,
        channels=256, head_dim=64, n_blocks=4, mid_blocks=12, dec_heads=8,
        hift_channels=512, resblocks=[3, 7, 11], dilations=[[1, 3, 5]] * 3),
}

_YAML = """\
sample_rate: 24000
llm_input_size: {hidden}
llm_output_size: {hidden}
spk_embed_dim: {speaker_dim}
qwen_pretrain_path: ''
token_frame_rate: {token_rate}
token_mel_ratio: 2

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: {speech_tokens}
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: {flow_input}
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {speech_tokens}
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: {flow_input}
        attention_heads: {flow_heads}
        linear_units: {flow_units}
        num_blocks: {flow_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: {flow_input}
        use_cnn_module: False
        macaron_style: False
        use_dynamic_chunk: True
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{channels}]
            dropout: 0.0
            attention_head_dim: {head_dim}
            n_blocks: {n_blocks}
            num_mid_blocks: {mid_blocks}
            num_heads: {dec_heads}
            act_fn: 'gelu'
            static_chunk_size: !ref <token_frame_rate> * <token_mel_ratio>
            num_decoding_left_chunks: 2

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {hift_channels}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: {resblocks}
    resblock_dilation_sizes: {dilations}
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {hift_channels}

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False
"""


def _qwen_folder(folder: Path, sizes: dict[str, Any]) -> None:
    """A Qwen2 causal LM with random weights and a byte-level tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    folder.mkdir(parents=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>",
                            pad_token="<|endoftext|>").save_pretrained(str(folder))
    config = Qwen2Config(max_position_embeddings=32768, tie_word_embeddings=True,
                         **sizes["qwen"])
    Qwen2ForCausalLM(config).save_pretrained(str(folder))


def _onnx_models(root: Path, speech_tokens: int) -> None:
    """The speaker encoder and speech tokenizer stand-ins (see the module's doc)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(graph: Any, path: Path) -> None:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7  # what every onnxruntime since 1.8 reads
        onnx.checker.check_model(model)
        onnx.save(model, str(path))

    rng = np.random.default_rng(0)
    projection = rng.standard_normal((80, SPEAKER_DIM)).astype(np.float32) / 9
    save(helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["mean", "projection"], ["embedding"])],
        "campplus_stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "frames", 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, SPEAKER_DIM])],
        [numpy_helper.from_array(projection, "projection")],
    ), root / "campplus.onnx")
    # 128 whisper mels at 100 frames/s -> one token every 4 frames (25 Hz).
    save(helper.make_graph(
        [helper.make_node("ReduceMean", ["feats"], ["level"], axes=[1], keepdims=0),
         helper.make_node("Slice", ["level", "starts", "ends", "axes", "steps"], ["hop"]),
         helper.make_node("Abs", ["hop"], ["magnitude"]),
         helper.make_node("Mul", ["magnitude", "scale"], ["scaled"]),
         helper.make_node("Floor", ["scaled"], ["floored"]),
         helper.make_node("Cast", ["floored"], ["ids"], to=TensorProto.INT64),
         helper.make_node("Mod", ["ids", "vocab"], ["tokens"])],
        "speech_tokenizer_stand_in",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, 128, "frames"]),
         helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1])],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "tokens"])],
        [numpy_helper.from_array(np.array([0], np.int64), "starts"),
         numpy_helper.from_array(np.array([2**62], np.int64), "ends"),
         numpy_helper.from_array(np.array([1], np.int64), "axes"),
         numpy_helper.from_array(np.array([4], np.int64), "steps"),
         numpy_helper.from_array(np.array(1000.0, np.float32), "scale"),
         numpy_helper.from_array(np.array(speech_tokens, np.int64), "vocab")],
    ), root / "speech_tokenizer_v2.onnx")


def build_cosyvoice2(root: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Writes the model folder under `root` and returns it."""
    from avatar_rtc.backends.torchaudio_compat import without_mismatched_extension

    without_mismatched_extension()  # CosyVoice's modules import torchaudio
    import torch
    from hyperpyyaml import load_hyperpyyaml

    sizes = _SIZES[size]
    folder = root / f"CosyVoice2-random-{size}"
    folder.mkdir(parents=True)
    torch.manual_seed(seed)
    _qwen_folder(folder / "CosyVoice-BlankEN", sizes)
    values = {k: v for k, v in sizes.items() if k != "qwen"}
    yaml = _YAML.format(hidden=sizes["qwen"]["hidden_size"], speaker_dim=SPEAKER_DIM,
                        token_rate=TOKEN_RATE, **values)
    (folder / "cosyvoice2.yaml").write_text(yaml)
    configs = load_hyperpyyaml(yaml, overrides={
        "qwen_pretrain_path": str(folder / "CosyVoice-BlankEN")})
    for name in ("llm", "flow", "hift"):
        torch.save(configs[name].state_dict(), folder / f"{name}.pt")
    _onnx_models(folder, sizes["speech_tokens"])
    return folder
