"""Study scripts: each exposes a frozen ``Config``, ``run(config) -> results`` and
``plot(results, outdir) -> paths``; the ``lab`` command drives them."""
