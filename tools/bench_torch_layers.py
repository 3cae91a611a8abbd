"""Times PyTorch's nn.RNN (tanh), nn.LSTM and nn.GRU forward + backward at the `recur bench`
suite shapes, float32, so the numbers sit beside Recur's in one run: on the CPU (two threads, the
three small shapes) or on CUDA (cuDNN, TF32 off, all six suite shapes).

Usage: python3 tools/bench_torch_layers.py [--device cpu|cuda] [--threads 2] [--repetitions 20]
Prints the median ms per shape and cell for the forward pass and forward + backward; with --json,
one JSON object per shape and cell instead.
"""
import argparse
import json
import statistics
import time

import torch

SHAPES = [(32, 400, 32, 32), (32, 100, 128, 128), (64, 50, 256, 256)]  # (B, T, I, H)
LARGE_SHAPES = [(64, 100, 512, 512), (128, 50, 1024, 1024), (4, 256, 1024, 1024)]  # GPU suite only
CELLS = {"rnn_tanh": lambda i, h: torch.nn.RNN(i, h), "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def median_ms(run, warmup, repetitions, synchronize):
    for _ in range(warmup):
        run()
    synchronize()
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        run()
        synchronize()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    shapes = SHAPES
    synchronize = lambda: None
    if args.device == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        shapes = SHAPES + LARGE_SHAPES
        synchronize = torch.cuda.synchronize
        where = f"{torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}, TF32 off"
    else:
        where = f"{args.threads} threads"
    if not args.json:
        print(f"torch {torch.__version__}, {where}, float32, median of {args.repetitions}")
        print(f"{'measurement':<36}{'forward ms':>12}{'fwd+bwd ms':>12}")
    for b, t, i, h in shapes:
        for name, make in CELLS.items():
            layer = make(i, h).to(device)
            x = torch.randn(t, b, i, device=device, requires_grad=True)  # time-major [T, B, I], as Recur's

            def forward():
                with torch.no_grad():
                    layer(x)

            def forward_backward():
                layer.zero_grad(set_to_none=True)
                x.grad = None
                output, _ = layer(x)
                output.sum().backward()

            fwd = median_ms(forward, args.warmup, args.repetitions, synchronize)
            both = median_ms(forward_backward, args.warmup, args.repetitions, synchronize)
            if args.json:
                print(json.dumps({"cell": name, "B": b, "T": t, "I": i, "H": h,
                                  "forward_ms": fwd, "forward_backward_ms": both}))
            else:
                print(f"{f'{name} B={b} T={t} I={i} H={h}':<36}{fwd:>12.3f}{both:>12.3f}")


if __name__ == "__main__":
    main()
