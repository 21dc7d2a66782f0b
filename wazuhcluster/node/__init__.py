"""What both roles assemble around the shared rooms: the analysis service and node health."""
