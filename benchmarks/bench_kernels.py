"""Time attnsim's Triton kernels against torch's scaled_dot_product_attention on the GPU in hand.

For a small grid of shapes (dense and causal prefill, GQA; split-KV decode) it times, with
`triton.testing.do_bench` (warm-up, then the median), attnsim's kernels alone (plan and packing done
once: `prepared_forward`, `prepared_decode`) and SDPA's flash and cuDNN backends where torch has
them, after checking each output against a float64 reference (an output outside the accuracy
rule — twice the error of the same formula in bf16 — is reported and not timed), and prints one line per (kernel, shape): time, TFLOP/s on the FlashAttention
count (4 B H Lq Lk d, halved when causal). `--out FILE.jsonl` appends one record per line with the
device, driver-visible versions and the date: the measurements the repo keeps under
validation/measurements/. Without a CUDA device it prints "no GPU: nothing measured" and exits 0.
"""
import argparse
import datetime

from attnsim.validation.records import append_jsonl


def _shapes():
    # (name, batch, heads_q, heads_kv, seqlen_q, seqlen_kv, head_dim, causal)
    return [("dense", 4, 16, 16, 2048, 2048, 128, False), ("causal", 4, 16, 16, 4096, 4096, 128, True),
            ("gqa-causal", 2, 32, 8, 4096, 4096, 128, True), ("dense-d64", 8, 16, 16, 2048, 2048, 64, False)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", metavar="FILE.jsonl", help="append one JSON record per measurement")
    args = parser.parse_args(argv)
    try:
        import torch
        import triton
        from triton.testing import do_bench
    except ImportError as e:
        print(f"no GPU: nothing measured ({e})")
        return 0
    if not torch.cuda.is_available():
        print("no GPU: nothing measured")
        return 0
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    from attnsim.kernels import attention, decode, decode_reference, reference
    from attnsim.kernels.triton_attention import prepared_decode, prepared_forward
    dev = torch.device("cuda")
    meta = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__, "triton": triton.__version__,
            "cuda": torch.version.cuda, "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    records = []

    def record(kernel, name, shape, launch, flops, err, base):
        """Time `launch` (median of do_bench) unless its output failed the accuracy rule: an error against
        float64 above twice that of the same formula in the input's precision (plus 1e-3) is not timed."""
        if err > 2 * base + 1e-3:
            print(f"{kernel:<16}{name:<12} NOT TIMED: error {err:.2e} > 2 x bf16 baseline {base:.2e}")
            return
        ms = do_bench(launch, return_mode="median")
        r = {**meta, "kernel": kernel, "shape_name": name, **shape, "median_ms": ms,
             "tflops": flops / ms / 1e9, "max_abs_err_vs_float64": err, "same_precision_err": base}
        records.append(r)
        print(f"{kernel:<16}{name:<12} {ms:8.3f} ms  {r['tflops']:7.1f} TFLOP/s  err {err:.2e}")

    for name, b, hq, hkv, lq, lk, d, causal in _shapes():
        q = torch.randn(b, hq, lq, d, device=dev, dtype=torch.bfloat16)
        k, v = (torch.randn(b, hkv, lk, d, device=dev, dtype=torch.bfloat16) for _ in range(2))
        shape = {"batch": b, "heads_q": hq, "heads_kv": hkv, "seqlen_q": lq, "seqlen_kv": lk, "head_dim": d,
                 "causal": causal, "dtype": "bf16"}
        flops = 4 * b * hq * lq * lk * d / (2 if causal else 1)
        sl = (q[:1, :2], k[:1, :max(1, 2 * hkv // hq)], v[:1, :max(1, 2 * hkv // hq)])  # heads 0, 1 and their kv
        ref = reference(*sl, causal=causal)
        base = (reference(*sl, causal=causal, dtype=torch.bfloat16).double() - ref).abs().max().item()
        out = attention(q, k, v, causal=causal)
        launch = prepared_forward(q, k, v, causal=causal)  # the kernel alone: packing and the plan are host-side, once
        record("attnsim-triton", name, shape, launch, flops, (out[:1, :2].double() - ref).abs().max().item(), base)
        kk, vv = (x.repeat_interleave(hq // hkv, 1) for x in (k, v))  # SDPA: expanded heads
        for label, backend in (("sdpa-flash", SDPBackend.FLASH_ATTENTION), ("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION)):
            def run_sdpa(backend=backend):
                with sdpa_kernel(backend):
                    return sdpa(q, kk, vv, is_causal=causal)  # lq == lk here: top-left = bottom-right
            try:
                o = run_sdpa()
            except RuntimeError as e:
                print(f"{label:<16}{name:<12} not available: {str(e).splitlines()[0]}")
                continue
            record(label, name, shape, run_sdpa, flops, (o[:1, :2].double() - ref).abs().max().item(), base)
    for b, hq, hkv, ctx in ((64, 32, 8, 8192), (8, 32, 8, 32768)):
        q = torch.randn(b, hq, 1, 128, device=dev, dtype=torch.bfloat16)
        kc, vc = (torch.randn(b, hkv, ctx, 128, device=dev, dtype=torch.bfloat16) for _ in range(2))
        shape = {"batch": b, "heads_q": hq, "heads_kv": hkv, "seqlen_q": 1, "seqlen_kv": ctx, "head_dim": 128,
                 "causal": True, "dtype": "bf16"}
        ref = decode_reference(q[:1], kc[:1], vc[:1])
        base = (decode_reference(q[:1], kc[:1], vc[:1], dtype=torch.bfloat16).double() - ref).abs().max().item()
        out = decode(q, kc, vc)
        launch, _ = prepared_decode(q, kc, vc)  # the split and combine kernels alone
        record("attnsim-decode", f"decode-{ctx}", shape, launch, 4 * b * hq * ctx * 128,
               (out[:1].double() - ref).abs().max().item(), base)
    if args.out:
        append_jsonl(args.out, records)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
