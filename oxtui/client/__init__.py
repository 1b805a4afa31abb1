"""The client side: reaching engines over their control sockets (connection, discover), and the one
interface a UI uses for an engine, embedded in this process or attached over a socket (link)."""
