"""Services: what the endpoints of every channel call; they use the engine and the database
layer and never commit."""
