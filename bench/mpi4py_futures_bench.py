"""mpi4py.futures' side of bench/mpi_vs_mpi4py.py: the workloads of mpi_bench.cpp, printed the
same way. Run: mpiexec -n 3 python3 -m mpi4py.futures bench/mpi4py_futures_bench.py"""
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def inc(x):
    return x + 1


def nbytes(b):
    return len(b)


def echo(b):
    return b


def best_of(runs, fn):
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    quick = "--quick" in sys.argv
    with MPIPoolExecutor() as ex:
        print(f"workers {ex._pool.size if hasattr(ex, '_pool') and ex._pool else 'n/a'}", flush=True)
        list(ex.map(inc, range(2000), chunksize=100))  # start and warm up every worker
        trips = 300 if quick else 1000
        t = best_of(3, lambda: [ex.submit(inc, i).result() for i in range(trips)])
        print(f"round_trip {t / trips * 1e6:.2f} us", flush=True)
        n1 = 3000 if quick else 10_000  # 100k at its rate would take half a minute a run
        t = best_of(2, lambda: list(ex.map(inc, range(n1), chunksize=1)))
        print(f"map_chunk1 {n1 / t:.0f} tasks/s", flush=True)
        n2 = 200_000 if quick else 1_000_000
        t = best_of(2, lambda: list(ex.map(inc, range(n2), chunksize=1000)))
        print(f"map_chunk1000 {n2 / t:.0f} tasks/s", flush=True)
        blobs = [bytes(1 << 20) for _ in range(64)]
        t = best_of(3, lambda: list(ex.map(nbytes, blobs, chunksize=1)))
        print(f"args_64x1MiB {64 * (1 << 20) / t / 1e9:.3f} GB/s", flush=True)
        big = bytes(64 << 20)
        t = best_of(3, lambda: ex.submit(echo, big).result())
        print(f"round_trip_64MiB {64 * (1 << 20) / t / 1e9:.3f} GB/s", flush=True)


if __name__ == "__main__":
    main()
