"""``python -m benchmarks.bench_throughput`` = ``vlmcap bench`` (the harness is in vlmcap.bench)."""

from vlmcap.bench import main


if __name__ == "__main__":
    main()
