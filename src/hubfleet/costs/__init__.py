"""Cost: the simulator's input files, and real cost per course from OpenCost (the I/O around hubfleet.simulate)."""
