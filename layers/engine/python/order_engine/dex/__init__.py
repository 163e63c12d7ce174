"""DEX access: the venue interface, the simulated Raydium and Meteora, and the router."""
