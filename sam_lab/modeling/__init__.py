"""The model, one stage per file, in lesson order (lessons 01-06).

kernels              attend: the one softmax(q k^T / sqrt(d) + bias) v, math or sdpa (03, 05)
layers               LayerNorm2d, MLPBlock, MLP
patching             PatchEmbed, window_partition / window_unpartition            (01)
positional_encoding  absolute embedding, decomposed relative bias, Fourier features (02)
attention            Attention: the ViT's self-attention with relative positions   (03)
image_encoder        Block, Neck, ImageEncoder: the ViT                            (03)
prompt_encoder       PromptEncoder: points, boxes, masks -> tokens and a dense map (04)
two_way_transformer  DecoderAttention, TwoWayAttentionBlock, TwoWayTransformer     (05)
mask_decoder         MaskDecoder: the dynamic mask head and IoU head               (06)
sam                  Sam: the stages assembled                                     (07)

Nothing here imports from sam_lab but ``config`` and ``kernels``: a model file never depends
on training, inference or teaching code.
"""
