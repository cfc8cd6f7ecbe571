from adapters.pedalboard.stretch import RubberBandStretcher

__all__ = ["RubberBandStretcher"]
