from edge.ops.demo.command import main

raise SystemExit(main())
