"""People's verdicts on detections and alerts, and the thresholds fitted from them (the only writes the
review door makes).

May import: vigil.errors, vigil.terminal, vigil.formats, vigil.config, vigil.store, vigil.ops
"""
