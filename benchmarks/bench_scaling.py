"""``python -m benchmarks.bench_scaling``: 1 engine actor vs N through vlmcap.ray, in one run."""

from vlmcap.bench._scaling import main


if __name__ == "__main__":
    main()
