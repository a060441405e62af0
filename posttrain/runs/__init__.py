"""What a run directory is and what posttrain may do inside it; stdlib only, so any layer may import it."""
