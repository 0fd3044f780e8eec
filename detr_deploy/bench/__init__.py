"""Chapter 04's measurements: latency, cold start, memory, sizes and FLOPs, in one command.

    python -m detr_deploy.bench --out data/benchmarks            # full run (12 min on 2 cores for the committed one)
    python -m detr_deploy.bench --out build/benchmark_quick --quick   # CI / notebook (1-2 min)

Modules, one job each:

* ``run``          the run: the sweeps over models, sizes, threads and batches, the latency
                   rows, ``benchmark.json``, and the command line above
* ``settings``     what a run measures (``QUICK``, ``FULL``) and the models it times
* ``runtimes``     the registry of what can be timed (``RUNTIMES``) and the one loader of each
* ``artefacts``    the exported-artefact cache, keyed by weights, settings and exporter source
* ``coldstart``    cold start measured in child processes (``python -m detr_deploy.bench.coldstart``)
* ``launcher``     the small parent of each cold-start child, so its peak memory is its own
* ``tuning``       the libtorch path's options against its default (tuning.csv)
* ``size_tables``  sizes.csv and models.csv of a run
* ``record``       what a run has measured so far, and what it skipped and why
* ``inputs``       the JPEG every runtime is timed on, and its decoding
* ``report``       reading a run for chapter 04: headline rows, goals, decision table
* ``readme``       the README's headline numbers from the committed run
* ``docker_image``  what a Docker image of the service weighs, read from its Dockerfile
* ``sizes``, ``flops``, ``timing``: bytes on disk, FLOP counting and GEMM peak, interleaved timing
"""
