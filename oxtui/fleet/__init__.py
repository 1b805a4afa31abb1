"""Several servers in one TUI and one CLI, through plain SSH: the fleet file (fleetfile), the far side
(bridge: every engine of the user behind one stdin/stdout), the near side (link: one ssh process per
host, reconnecting by itself; session: its engines as EngineClients for the TUI), and the deltas that
keep the link quiet (delta). The fleet verbs' printing is the command line's (cli/onhosts.py)."""
