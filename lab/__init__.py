"""Support code shared by every topic of the lab. Students read it; they never edit it."""
