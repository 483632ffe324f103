"""Models: encoders, teachers, adaptors, text towers, projectors, VLM, MTP heads."""
