from saewatch.cli import main

raise SystemExit(main())
