"""Every weight importer and exporter: one module per format, one naming convention.

    weight_files.py   the file readers every importer shares (safetensors, sharded indexes,
                      torch files through weights_only=True, untrusted JSON) and the
                      safetensors writer; nothing is unpickled
    diffusers_dit.py  diffusers' CogVideoX and Wan transformers, both directions
    cogvideox_vae.py  diffusers' AutoencoderKLCogVideoX
    t5.py             Hugging Face T5 / UMT5 encoders (read by text/conditioning.py)
    clip.py           transformers' CLIPModel, for the CLIP score (read by eval/clip_score.py)
    i3d.py            piergiaj's pytorch-i3d, FVD's network (read by eval/i3d_features.py)
    lora_adapter.py   a run's LoRA adapters alone
    stablehlo.py      the whole sampler as one `jax.export` artifact, and sampling from it

In a format's module, named after the thing (`<thing>` is the module's name):
    read_<what>(path)               files -> raw data (a state dict, a config.json)
    convert_state_dict(sd, spec)    foreign state dict -> our params, pure
    load_<thing>(path)              foreign files -> (spec or settings, params)
    import_<thing>(source, output)  foreign files -> a videogen export
                                    (`python -m videogen.convert`)
    to_state_dict(params, ...)      our params -> foreign state dict, pure
    export_<thing>(output, ...)     our params -> foreign files (`python -m videogen.export`)
A module that holds several architectures names each in its pure maps (`convert_cogvideox`,
`convert_wan`).

Our own checkpoint and export formats (Orbax, safetensors exports) stay in
`videogen/checkpoints.py`. This package's `__init__` imports nothing, so a numpy-only reader
such as `data/manifest.py` pulls in `weight_files` alone.
"""
