"""Enumerations the manager turns into names (RFC 2790, RFC 3805, IANA-PRINTER-MIB).

Data, not logic: code values to the names the scan report uses.
"""

from __future__ import annotations

PRINTER_STATUS = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
DEVICE_STATUS = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
# hrPrinterDetectedErrorState: bit 0 is the most significant bit of the first octet.
ERROR_BITS = ("lowPaper", "noPaper", "lowToner", "noToner", "doorOpen", "jammed", "offline",
              "serviceRequested", "inputTrayMissing", "outputTrayMissing",
              "markerSupplyMissing", "outputNearFull", "outputFull", "inputTrayEmpty",
              "overduePreventMaint")
ALERT_SEVERITY = {1: "other", 3: "critical", 4: "warning", 5: "warningBinaryChangeEvent"}
ALERT_GROUP = {1: "other", 3: "hostResourcesMIBStorageTable", 4: "hostResourcesMIBDeviceTable",
               5: "generalPrinter", 6: "cover", 7: "localization", 8: "input", 9: "output",
               10: "marker", 11: "markerSupplies", 12: "markerColorant", 13: "mediaPath",
               14: "channel", 15: "interpreter", 16: "consoleDisplayBuffer",
               17: "consoleLights", 18: "alert", 30: "finDevice", 31: "finSupply",
               32: "finSupplyMediaInput", 33: "finAttribute"}
ALERT_CODE = {1: "other", 2: "unknown", 3: "coverOpen", 4: "coverClosed", 5: "interlockOpen",
              6: "interlockClosed", 7: "configurationChange", 8: "jam",
              9: "subunitMissing", 10: "subunitLifeAlmostOver", 11: "subunitLifeOver",
              12: "subunitAlmostEmpty", 13: "subunitEmpty", 14: "subunitAlmostFull",
              15: "subunitFull", 501: "doorOpen", 502: "doorClosed", 503: "powerUp",
              504: "powerDown", 505: "printerNMSReset", 506: "printerManualReset",
              507: "printerReadyToPrint", 801: "inputMediaTrayMissing",
              802: "inputMediaSizeChange", 803: "inputMediaWeightChange",
              804: "inputMediaTypeChange", 805: "inputMediaColorChange",
              806: "inputMediaFormPartsChange", 807: "inputMediaSupplyLow",
              808: "inputMediaSupplyEmpty", 901: "outputMediaTrayMissing",
              902: "outputMediaTrayAlmostFull", 903: "outputMediaTrayFull",
              1001: "markerFuserUnderTemperature", 1002: "markerFuserOverTemperature",
              1101: "markerTonerEmpty", 1102: "markerInkEmpty", 1103: "markerPrintRibbonEmpty",
              1104: "markerTonerAlmostEmpty", 1105: "markerInkAlmostEmpty",
              1106: "markerPrintRibbonAlmostEmpty",
              1107: "markerWasteTonerReceptacleAlmostFull",
              1108: "markerWasteInkReceptacleAlmostFull",
              1109: "markerWasteTonerReceptacleFull", 1110: "markerWasteInkReceptacleFull",
              1111: "markerOpcLifeAlmostOver", 1112: "markerOpcLifeOver",
              1113: "markerDeveloperAlmostEmpty", 1114: "markerDeveloperEmpty",
              1115: "markerTonerCartridgeMissing", 1301: "mediaPathMediaTrayMissing",
              1302: "mediaPathMediaTrayAlmostFull", 1303: "mediaPathMediaTrayFull",
              1304: "mediaPathCannotDuplexMediaSelected"}
# A supply alert says the supply is nearly gone (low) or gone / full (empty).
SUPPLY_ALERT_LOW = frozenset({10, 12, 14, 1104, 1105, 1106, 1107, 1108, 1111, 1113})
SUPPLY_ALERT_EMPTY = frozenset({11, 13, 15, 1101, 1102, 1103, 1109, 1110, 1112, 1114, 1115})
SUPPLY_TYPE = {1: "other", 2: "unknown", 3: "toner", 4: "wasteToner", 5: "ink",
               6: "inkCartridge", 7: "inkRibbon", 8: "wasteInk", 9: "opc", 10: "developer",
               11: "fuserOil", 12: "solidWax", 13: "ribbonWax", 14: "wasteWax", 15: "fuser",
               16: "coronaWire", 17: "fuserOilWick", 18: "cleanerUnit",
               19: "fuserCleaningPad", 20: "transferUnit", 21: "tonerCartridge",
               22: "fuserOiler", 23: "water", 24: "wasteWater", 25: "glueWaterAdditive",
               26: "wastePaper", 27: "bindingSupply", 28: "bandingSupply",
               29: "stitchingWire", 30: "shrinkWrap", 31: "paperWrap", 32: "staples",
               33: "inserts", 34: "covers"}
SUPPLY_UNIT = {1: "other", 2: "unknown", 3: "tenThousandthsOfInches", 4: "micrometers",
               7: "impressions", 8: "sheets", 11: "hours", 12: "thousandthsOfOunces",
               13: "tenthsOfGrams", 14: "hundrethsOfFluidOunces", 15: "tenthsOfMilliliters",
               16: "feet", 17: "meters", 18: "items", 19: "percent"}
COUNTER_UNIT = {3: "tenThousandthsOfInches", 4: "micrometers", 5: "characters", 6: "lines",
                7: "impressions", 8: "sheets", 9: "dotRow", 11: "hours", 16: "feet",
                17: "meters"}
MARKER_TECH = {1: "other", 2: "unknown", 3: "electrophotographicLED",
               4: "electrophotographicLaser", 5: "electrophotographicOther",
               6: "impactMovingHeadDotMatrix9pin", 7: "impactMovingHeadDotMatrix24pin",
               8: "impactMovingHeadDotMatrixOther", 9: "impactMovingHeadFullyFormed",
               10: "impactBand", 11: "impactOther", 12: "inkjetAqueous", 13: "inkjetSolid",
               14: "inkjetOther", 15: "pen", 16: "thermalTransfer", 17: "thermalSensitive",
               18: "thermalDiffusion", 19: "thermalOther", 20: "electroerosion",
               21: "electrostatic", 22: "photographicMicrofiche",
               23: "photographicImagesetter", 24: "photographicOther", 25: "ionDeposition",
               26: "eBeam", 27: "typesetter"}
