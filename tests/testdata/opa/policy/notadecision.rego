# A package whose answer is not a decision: deny is a number.
package cmtest.notadecision

deny := 42
