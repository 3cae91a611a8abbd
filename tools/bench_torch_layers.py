"""Times PyTorch's nn.RNN (tanh), nn.LSTM and nn.GRU forward + backward on the CPU at the
`recur bench` suite shapes, float32, two threads, so the numbers sit beside Recur's in one run.

Usage: .venv-torch/bin/python tools/bench_torch_layers.py [--threads 2] [--repetitions 20]
Prints the median ms per shape and cell for the forward pass and forward + backward.
"""
import argparse
import statistics
import time

import torch

SHAPES = [(32, 400, 32, 32), (32, 100, 128, 128), (64, 50, 256, 256)]  # (B, T, I, H)
CELLS = {"rnnTanh": lambda i, h: torch.nn.RNN(i, h), "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def median_ms(run, warmup, repetitions):
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, float32, median of {args.repetitions}")
    print(f"{'measurement':<36}{'forward ms':>12}{'fwd+bwd ms':>12}")
    for b, t, i, h in SHAPES:
        for name, make in CELLS.items():
            layer = make(i, h)
            x = torch.randn(t, b, i, requires_grad=True)  # time-major [T, B, I], as Recur's

            def forward():
                with torch.no_grad():
                    layer(x)

            def forward_backward():
                layer.zero_grad(set_to_none=True)
                x.grad = None
                output, _ = layer(x)
                output.sum().backward()

            fwd = median_ms(forward, args.warmup, args.repetitions)
            both = median_ms(forward_backward, args.warmup, args.repetitions)
            print(f"{f'{name} B={b} T={t} I={i} H={h}':<36}{fwd:>12.3f}{both:>12.3f}")


if __name__ == "__main__":
    main()
