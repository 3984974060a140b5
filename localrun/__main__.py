from localrun.demo import main

raise SystemExit(main())
