"""temp"""
from gateway.estimate.memory import *  # noqa
from gateway.estimate.memory import GIB, EstimateError, estimate  # noqa
