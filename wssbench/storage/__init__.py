"""What wssbench keeps on disk: the cache (``cache``, ``mapcache``, ``locks``, ``datakey``)
and atomic output files and folders (``io``)."""
