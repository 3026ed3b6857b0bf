"""Domain rules shared by the gateway and the services that own them."""
