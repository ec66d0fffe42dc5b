Daemon.main()
