from wssbench.cli import main

main()
